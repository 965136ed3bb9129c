//! libdmtcp_modify_env.so: DMTCP's modify-env plugin (see README.md). On restart, applies
//! `dmtcp_env.txt` to the restored process's environment.
//!
//! The RESTART hook runs on libdmtcp's checkpoint thread while the application's threads are
//! still stopped, possibly inside malloc or setenv holding their locks: this code allocates
//! nothing and takes no lock. It builds a new `environ` array in static storage (two sets,
//! alternating between restarts, so the strings of the previous restart stay valid until they
//! are copied).

use core::ffi::{c_char, c_int, c_void, CStr};
use core::ptr::{addr_of_mut, null_mut};

const EVENT_RESTART: c_int = 18;
const MAX_VARS: usize = 4096;
const ARENA: usize = 128 << 10;
const MAX_FILE: usize = 64 << 10;
const ENV_FILE_NAME: &[u8] = b"dmtcp_env.txt";

/// DMTCP's `DmtcpPluginDescriptor_t`.
#[repr(C)]
#[derive(Clone, Copy)]
struct Descriptor {
    api_version: *const c_char,
    dmtcp_version: *const c_char,
    name: *const c_char,
    author: *const c_char,
    email: *const c_char,
    description: *const c_char,
    hook: Option<unsafe extern "C" fn(c_int, *mut c_void)>,
}

struct SyncDescriptor(Descriptor);
// SAFETY: only immutable pointers to static strings and a function.
unsafe impl Sync for SyncDescriptor {}

static DESCRIPTOR: SyncDescriptor = SyncDescriptor(Descriptor {
    api_version: c"3".as_ptr(),
    dmtcp_version: c"dmtcp-rs".as_ptr(),
    name: c"modify-env".as_ptr(),
    author: c"dmtcp-rs".as_ptr(),
    email: c"".as_ptr(),
    description: c"Updates the environment on restart from dmtcp_env.txt".as_ptr(),
    hook: Some(hook),
});

#[used]
#[unsafe(link_section = ".init_array")]
static INIT: extern "C" fn() = register;

/// Constructor: register with libdmtcp.so, looked up at run time so that loading this library
/// without it does nothing.
extern "C" fn register() {
    // SAFETY: dlsym with a NUL-terminated name.
    let f = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"dmtcp_register_plugin".as_ptr()) };
    if !f.is_null() {
        // SAFETY: libdmtcp's dmtcp_register_plugin takes the descriptor by value.
        let f: extern "C" fn(Descriptor) = unsafe { core::mem::transmute(f) };
        f(DESCRIPTOR.0);
    }
}

unsafe extern "C" fn hook(event: c_int, _data: *mut c_void) {
    if event == EVENT_RESTART {
        restart();
    }
}

unsafe extern "C" {
    static mut environ: *mut *mut c_char;
}

/// The environment being built: two alternating sets of an array and a string arena.
struct EnvSet {
    vars: [*mut c_char; MAX_VARS + 1],
    arena: [u8; ARENA],
}

static mut SETS: [EnvSet; 2] = [const { EnvSet { vars: [null_mut(); MAX_VARS + 1], arena: [0; ARENA] } }; 2];
static mut NEXT_SET: usize = 0;
static mut FILE_BUF: [u8; MAX_FILE] = [0; MAX_FILE];

/// A new environment under construction in one EnvSet.
struct Builder {
    set: &'static mut EnvSet,
    other_arena: (usize, usize),
    n: usize,
    used: usize,
    full: bool,
}

impl Builder {
    /// Store `parts` concatenated, NUL-terminated, in the arena.
    fn store(&mut self, parts: &[&[u8]]) -> Option<*mut c_char> {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        if self.used + len + 1 > ARENA {
            self.full = true;
            return None;
        }
        let start = self.used;
        for p in parts {
            self.set.arena[self.used..self.used + p.len()].copy_from_slice(p);
            self.used += p.len();
        }
        self.set.arena[self.used] = 0;
        self.used += 1;
        Some(self.set.arena[start..].as_mut_ptr() as *mut c_char)
    }

    fn entry(&self, i: usize) -> &[u8] {
        // SAFETY: entries are NUL-terminated strings (the old environment's, or ours).
        unsafe { CStr::from_ptr(self.set.vars[i]) }.to_bytes()
    }

    fn find(&self, name: &[u8]) -> Option<usize> {
        (0..self.n).find(|&i| {
            let e = self.entry(i);
            e.len() > name.len() && e.starts_with(name) && e[name.len()] == b'='
        })
    }

    fn get(&self, name: &[u8]) -> Option<&[u8]> {
        self.find(name).map(|i| &self.entry(i)[name.len() + 1..])
    }

    fn set(&mut self, name: &[u8], value: &[u8]) {
        let Some(s) = self.store(&[name, b"=", value]) else { return };
        match self.find(name) {
            Some(i) => self.set.vars[i] = s,
            None if self.n < MAX_VARS => {
                self.set.vars[self.n] = s;
                self.n += 1;
            }
            None => self.full = true,
        }
    }

    fn unset(&mut self, name: &[u8]) {
        while let Some(i) = self.find(name) {
            self.set.vars.copy_within(i + 1..self.n, i);
            self.n -= 1;
        }
    }
}

fn warn(parts: &[&[u8]]) {
    for p in parts {
        // SAFETY: writing bytes we own to stderr.
        unsafe { libc::write(2, p.as_ptr() as *const c_void, p.len()) };
    }
}

/// dmtcp_get_restart_env() of libdmtcp.so, into `buf`; the value's length if found.
fn restart_env(name: &[u8], buf: &mut [u8]) -> Option<usize> {
    type GetEnv = unsafe extern "C" fn(*const c_char, *mut c_char, usize) -> c_int;
    let mut cname = [0u8; 256];
    if name.len() >= cname.len() {
        return None;
    }
    cname[..name.len()].copy_from_slice(name);
    // SAFETY: dlsym with a NUL-terminated name.
    let f = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"dmtcp_get_restart_env".as_ptr()) };
    if f.is_null() {
        return None;
    }
    // SAFETY: libdmtcp's function of that type; cname is NUL-terminated, buf writable.
    let rc = unsafe { core::mem::transmute::<*mut c_void, GetEnv>(f)(cname.as_ptr() as *const c_char, buf.as_mut_ptr() as *mut c_char, buf.len()) };
    (rc == 0).then(|| buf.iter().position(|&b| b == 0).unwrap_or(0))
}

/// `dir/name` (or `name` alone if `dir` is empty) NUL-terminated in `out`.
fn join<'a>(out: &'a mut [u8], dir: &[u8], name: &[u8]) -> Option<&'a CStr> {
    let slash = usize::from(!dir.is_empty());
    let len = dir.len() + slash + name.len();
    if len + 1 > out.len() {
        return None;
    }
    out[..dir.len()].copy_from_slice(dir);
    if slash == 1 {
        out[dir.len()] = b'/';
    }
    out[dir.len() + slash..len].copy_from_slice(name);
    out[len] = 0;
    CStr::from_bytes_with_nul(&out[..=len]).ok()
}

/// Read the first dmtcp_env.txt found into `buf`; its length.
fn read_env_file(buf: &mut [u8]) -> Option<usize> {
    let mut val = [0u8; 4096];
    let mut path = [0u8; 4200];
    let mut candidates: [Option<&CStr>; 4] = [None; 4];
    let mut storage = [[0u8; 4200]; 3];
    if let Some(n) = restart_env(b"DMTCP_ENV_FILE", &mut val) {
        candidates[0] = join(&mut path, b"", &val[..n]);
    }
    let [s0, s1, s2] = &mut storage;
    if let Some(n) = restart_env(b"DMTCP_RESTART_CWD", &mut val) {
        candidates[1] = join(s0, &val[..n], ENV_FILE_NAME);
    }
    candidates[2] = join(s1, b"", ENV_FILE_NAME);
    // SAFETY: dlsym with a NUL-terminated name.
    let f = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"dmtcp_get_ckpt_dir".as_ptr()) };
    if !f.is_null() {
        // SAFETY: libdmtcp's `const char *dmtcp_get_ckpt_dir(void)`.
        let dir = unsafe { core::mem::transmute::<*mut c_void, unsafe extern "C" fn() -> *const c_char>(f)() };
        if !dir.is_null() {
            // SAFETY: a NUL-terminated string owned by libdmtcp.
            candidates[3] = join(s2, unsafe { CStr::from_ptr(dir) }.to_bytes(), ENV_FILE_NAME);
        }
    }
    for c in candidates.into_iter().flatten() {
        // SAFETY: open with a NUL-terminated path.
        let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
        if fd < 0 {
            continue;
        }
        let mut len = 0;
        while len < buf.len() {
            // SAFETY: reading into the unused tail of buf.
            let r = unsafe { libc::read(fd, buf[len..].as_mut_ptr() as *mut c_void, buf.len() - len) };
            if r <= 0 {
                break;
            }
            len += r as usize;
        }
        // SAFETY: closing the fd opened above.
        unsafe { libc::close(fd) };
        if len == buf.len() {
            warn(&[b"[dmtcp] modify-env: ", c.to_bytes(), b" is too large; ignored\n"]);
            return None;
        }
        return Some(len);
    }
    None
}

/// Apply the file's lines to the environment under construction (DMTCP's format: `NAME=VALUE`,
/// `NAME` alone unsets, `#` and unquoted blanks end a line's content, `"..."` quotes, `\`
/// escapes one character, `$NAME` expands: from this file if it set NAME earlier, else from
/// dmtcp_restart's environment).
fn apply(text: &[u8], env: &mut Builder) {
    let mut name = [0u8; 256];
    let mut value = [0u8; 8192];
    let (mut nlen, mut vlen) = (0usize, 0usize);
    let mut in_value = false;
    let mut quoted = false;
    let mut skipping = false;
    let mut changed = [[0u8; 64]; 64];
    let mut nchanged = 0;
    let mut i = 0;
    let push = |buf: &mut [u8], len: &mut usize, b: &[u8]| {
        let take = b.len().min(buf.len() - *len);
        buf[*len..*len + take].copy_from_slice(&b[..take]);
        *len += take;
    };
    while i <= text.len() {
        let c = text.get(i).copied().unwrap_or(b'\n');
        i += 1;
        if c == b'\n' && !quoted {
            if nlen > 0 {
                if in_value {
                    env.set(&name[..nlen], &value[..vlen]);
                } else {
                    env.unset(&name[..nlen]);
                }
                if nlen < 64 && nchanged < changed.len() {
                    changed[nchanged][..nlen].copy_from_slice(&name[..nlen]);
                    nchanged += 1;
                }
            }
            (nlen, vlen, in_value, skipping) = (0, 0, false, false);
            continue;
        }
        if skipping {
            continue;
        }
        let (buf, len): (&mut [u8], &mut usize) = if in_value { (&mut value, &mut vlen) } else { (&mut name, &mut nlen) };
        match c {
            b' ' | b'\t' | b'#' if !quoted => skipping = true,
            b'"' => quoted = !quoted,
            b'=' if !in_value && !quoted => in_value = true,
            b'\\' if i < text.len() => {
                push(buf, len, &text[i..=i]);
                i += 1;
            }
            b'$' => {
                let start = i;
                while i < text.len() && (text[i].is_ascii_alphanumeric() || text[i] == b'_') {
                    i += 1;
                }
                let var = &text[start..i];
                let set_here = changed[..nchanged].iter().any(|n| n.starts_with(var) && n.get(var.len()) == Some(&0));
                if set_here {
                    if let Some(v) = env.get(var) {
                        let mut tmp = [0u8; 4096];
                        let k = v.len().min(tmp.len());
                        tmp[..k].copy_from_slice(&v[..k]);
                        push(buf, len, &tmp[..k]);
                    }
                } else {
                    let mut tmp = [0u8; 4096];
                    if let Some(k) = restart_env(var, &mut tmp) {
                        push(buf, len, &tmp[..k]);
                    }
                }
            }
            _ => push(buf, len, &[c]),
        }
    }
}

fn restart() {
    // SAFETY: FILE_BUF is used only here, on the one checkpoint thread.
    let buf = unsafe { &mut *addr_of_mut!(FILE_BUF) };
    let Some(len) = read_env_file(buf) else { return };
    // SAFETY: the sets are used only here, on the checkpoint thread, one restart at a time.
    let (k, sets) = unsafe { (*addr_of_mut!(NEXT_SET), &mut *addr_of_mut!(SETS)) };
    let [a, b] = sets;
    let (set, other) = if k == 0 { (a, b) } else { (b, a) };
    let other_arena = (other.arena.as_ptr() as usize, other.arena.as_ptr() as usize + ARENA);
    let mut env = Builder { set, other_arena, n: 0, used: 0, full: false };
    // Copy the current environment; strings in the other set's arena are copied too, since the
    // next restart will reuse that arena.
    // SAFETY: environ is a NULL-terminated array of NUL-terminated strings.
    let mut p = unsafe { environ };
    while !p.is_null() && env.n < MAX_VARS {
        // SAFETY: within the NULL-terminated array.
        let s = unsafe { *p };
        if s.is_null() {
            break;
        }
        let addr = s as usize;
        let s = if (env.other_arena.0..env.other_arena.1).contains(&addr) {
            // SAFETY: a NUL-terminated string in our arena.
            let bytes = unsafe { CStr::from_ptr(s) }.to_bytes();
            let mut copy = [0u8; 8192];
            let k = bytes.len().min(copy.len());
            copy[..k].copy_from_slice(&bytes[..k]);
            match env.store(&[&copy[..k]]) {
                Some(s) => s,
                None => break,
            }
        } else {
            s
        };
        env.set.vars[env.n] = s;
        env.n += 1;
        // SAFETY: advancing within the array (its NULL ends the loop).
        p = unsafe { p.add(1) };
    }
    // SAFETY: FILE_BUF holds `len` bytes read above.
    apply(&buf[..len], &mut env);
    if env.full {
        warn(&[b"[dmtcp] modify-env: environment too large; some entries of dmtcp_env.txt were not applied\n"]);
    }
    env.set.vars[env.n] = null_mut();
    // SAFETY: installing a NULL-terminated array that lives as long as the process; the
    // application's threads are stopped.
    unsafe {
        environ = env.set.vars.as_mut_ptr();
        *addr_of_mut!(NEXT_SET) = 1 - k;
    }
}
