//! dmtcp_coordinator: see dmtcp_rs::coordinator.

fn main() {
    dmtcp_rs::coordinator::main()
}
