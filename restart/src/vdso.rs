//! Putting the vdso back where the program's libc expects it.
//!
//! On the kernel that wrote the image (its vdso code is byte for byte the stored copy) the live
//! vdso, vvar and vvar_vclock are moved to the image's addresses. On another kernel the live ones
//! are moved out of the way as a group (the vdso finds its data pages at fixed offsets), the
//! stored copy is mapped at the old address, and each of its exported functions becomes a jump to
//! the live function of the same name (arch::vdso, arch::encode_jump).
//!
//! Runs in stage 2 of the loader: no allocation, no locks.

use crate::fail::{die, die_at};
use crate::restore::{area_at, conflicts, overlaps, prot_bits, read_area_data};
use crate::{Ctx, MAP_ANONYMOUS, MAP_FIXED_NOREPLACE, MAP_PRIVATE, PROT_RW};
use dmtcp_arch::{sys, vdso::Vdso, Sysno};
use dmtcp_layout::{AreaRecord, FileHeader, Range, AREA_VDSO_TEXT};

const MREMAP_MAYMOVE: usize = 1;
const MREMAP_FIXED: usize = 2;
const PROT_RX: usize = 5;

/// The outcome of [`place`].
pub struct Placed {
    /// The image's vdso copy must be mapped and pointed at `live`.
    pub redirect: bool,
    /// Where this kernel's vdso now is (empty if it has none).
    pub live: Range,
}

const KEEP: Placed = Placed { redirect: false, live: Range { start: 0, end: 0 } };

fn vdso_text(ctx: &Ctx) -> Option<AreaRecord> {
    let h = &ctx.header;
    (0..h.num_areas as usize).map(|i| area_at(ctx.tables, h, i)).find(|a| a.flags & AREA_VDSO_TEXT != 0)
}

/// Called with the address space cleared: where the current vdso, vvar and vvar_vclock are.
pub fn place(ctx: &Ctx, vdso: Range, vvar: Range, vclock: Range) -> Placed {
    let h = &ctx.header;
    if h.vdso.is_empty() {
        return KEEP; // the checkpointed process had no vdso (qemu-user): nothing points into one
    }
    if h.vvar.is_empty() && vvar.is_empty() && vclock.is_empty() && vdso.len() == h.vdso.len() {
        copy_dataless_vdso(vdso, h.vdso);
        return KEEP;
    }
    let text = vdso_text(ctx);
    let same_shape = vdso.len() == h.vdso.len() && vvar.len() == h.vvar.len() && vclock.len() == h.vvar_vclock.len();
    let same_code = match &text {
        Some(a) => same_shape && !ctx.force_vdso_redirect && stored_equals(ctx, a, vdso),
        None => same_shape, // a 1.0 image has no copy: the sizes are all there is to compare
    };
    let moves = [(vvar, h.vvar, "cannot move [vvar]"), (vclock, h.vvar_vclock, "cannot move [vvar_vclock]"), (vdso, h.vdso, "cannot move [vdso]")];
    if same_code {
        move_specials(&moves);
        return KEEP;
    }
    if text.is_none() {
        report_shapes(h, vdso, vvar, vclock);
        die(
            "this kernel's vdso differs from the checkpointed one, and the image (format 1.0) has no copy of it: restart on the same kernel build",
            0,
        );
    }
    Placed { redirect: true, live: move_out_of_the_way(ctx, &moves) }
}

fn report_shapes(h: &FileHeader, vdso: Range, vvar: Range, vclock: Range) {
    sys::write_all(2, b"mtcp_restart: vdso/vvar/vvar_vclock bytes now ");
    for (now, then) in [(vdso, h.vdso), (vvar, h.vvar), (vclock, h.vvar_vclock)] {
        let mut b = [0u8; 20];
        sys::write_all(2, crate::fail::fmt_dec(now.len(), &mut b));
        sys::write_all(2, b"/");
        sys::write_all(2, crate::fail::fmt_dec(then.len(), &mut b));
        sys::write_all(2, b" ");
    }
    sys::write_all(2, b"(now/checkpointed)\n");
}

/// The stored vdso pages of area `a`, read into a fresh mapping (the caller unmaps it).
fn read_copy(ctx: &Ctx, a: &AreaRecord) -> usize {
    let len = a.len() as usize;
    // SAFETY: a fresh anonymous mapping wherever the kernel finds room.
    let buf = match unsafe { sys::mmap(0, len, PROT_RW, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) } {
        Ok(b) => b,
        Err(e) => die("cannot allocate memory for the vdso copy", e.into_raw()),
    };
    // SAFETY: buf is ours, writable, a.len() bytes.
    unsafe { read_area_data(ctx, a, buf) };
    buf
}

/// Is the image's copy of the vdso the same code as this kernel's vdso at `live`?
fn stored_equals(ctx: &Ctx, a: &AreaRecord, live: Range) -> bool {
    if a.len() != live.len() {
        return false;
    }
    let len = a.len() as usize;
    let copy = read_copy(ctx, a);
    // SAFETY: both ranges are mapped readable for `len` bytes: our copy and the live vdso.
    let same = unsafe { crate::mem::memcmp(copy as *const u8, live.start as usize as *const u8, len) } == 0;
    // SAFETY: our own temporary mapping.
    let _ = unsafe { sys::munmap(copy, len) };
    same
}

fn mremap_to(from: Range, to: Range) -> Result<(), dmtcp_arch::Errno> {
    if from == to {
        return Ok(());
    }
    // SAFETY: moves one kernel special mapping to an address where nothing is mapped yet.
    unsafe {
        syscalls::syscall5(
            Sysno::mremap,
            from.start as usize,
            from.len() as usize,
            to.len() as usize,
            MREMAP_MAYMOVE | MREMAP_FIXED,
            to.start as usize,
        )
    }
    .map(|_| ())
}

/// Move each (now, destination) special mapping. Two steps through a parking range that overlaps
/// neither the current nor the final places: mremap refuses a move onto its own source (EINVAL),
/// and a direct move of one special onto another's current place would unmap that one. Both
/// happen whenever ASLR puts the new vdso near the old one, which is common in the narrow top
/// window of a 32-bit process.
fn move_specials(moves: &[(Range, Range, &str); 3]) {
    if moves.iter().all(|(now, to, _)| now == to || now.is_empty()) {
        return;
    }
    let total: u64 = moves.iter().map(|(now, _, _)| now.len()).sum();
    let park = find_free(total, |s, e| moves.iter().any(|(_, to, _)| overlaps(s as usize, e as usize, to.start, to.end)));
    let mut at = park;
    let mut parked = [Range::default(); 3];
    for (i, (now, _, what)) in moves.iter().enumerate() {
        if now.is_empty() {
            continue;
        }
        parked[i] = Range { start: at, end: at + now.len() };
        if let Err(e) = mremap_to(*now, parked[i]) {
            die_at(what, parked[i].start, e.into_raw());
        }
        at += now.len();
    }
    for (i, (now, to, what)) in moves.iter().enumerate() {
        if !now.is_empty() {
            if let Err(e) = mremap_to(parked[i], *to) {
                die_at(what, to.start, e.into_raw());
            }
        }
    }
}

/// Another kernel: keep its specials together (same offsets between them) at an address that no
/// area of the image and none of the image's old specials use. Returns the live vdso's range.
fn move_out_of_the_way(ctx: &Ctx, moves: &[(Range, Range, &str); 3]) -> Range {
    let present = || moves.iter().map(|(now, _, _)| *now).filter(|r| !r.is_empty());
    let Some(lo) = present().map(|r| r.start).min() else { return Range::default() };
    let hi = present().map(|r| r.end).max().unwrap_or(lo);
    let base = find_free(hi - lo, |s, e| conflicts(&ctx.header, ctx.tables, s as usize, (e - s) as usize));
    // SAFETY: find_free's reservation, ours; the moves below need the range empty.
    let _ = unsafe { sys::munmap(base as usize, (hi - lo) as usize) };
    let shifted = |r: Range| if r.is_empty() { r } else { Range { start: r.start - lo + base, end: r.end - lo + base } };
    let to =
        [(moves[0].0, shifted(moves[0].0), moves[0].2), (moves[1].0, shifted(moves[1].0), moves[1].2), (moves[2].0, shifted(moves[2].0), moves[2].2)];
    move_specials(&to);
    to[2].1
}

/// Reserve `len` bytes (PROT_NONE) where nothing is mapped now and `taken(start, end)` is false.
fn find_free(len: u64, taken: impl Fn(u64, u64) -> bool) -> u64 {
    let mut cand: u64 = 0x1000_0000;
    while cand + len <= 0xC000_0000 {
        if !taken(cand, cand + len) {
            // SAFETY: MAP_FIXED_NOREPLACE never replaces a mapping; a PROT_NONE reservation.
            if let Ok(a) = unsafe { sys::mmap(cand as usize, len as usize, 0, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0) } {
                if a as u64 == cand {
                    return cand;
                }
                // SAFETY: an old kernel ignored NOREPLACE and placed it elsewhere: ours to drop.
                let _ = unsafe { sys::munmap(a, len as usize) };
            }
        }
        cand += 0x10_0000;
    }
    die("no free address range to move the vdso through", 0)
}

/// A vdso without data pages (qemu-user's, whose functions just make system calls) may be
/// copied: the emulator keeps using the signal-return trampoline where it put it, so the vdso
/// stays there and the program's old vdso address gets a copy of the same code.
fn copy_dataless_vdso(now: Range, old: Range) {
    if now == old {
        return;
    }
    let len = now.len() as usize;
    // SAFETY: the old range is free (everything outside the hole and the specials was unmapped;
    // it does not overlap the current vdso, checked by MAP_FIXED_NOREPLACE).
    match unsafe { sys::mmap(old.start as usize, len, PROT_RW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0) } {
        Ok(a) if a == old.start as usize => {}
        _ => die_at("cannot map a copy of the vdso", old.start, 0),
    }
    // SAFETY: both ranges are mapped, readable and writable respectively, and `len` long.
    unsafe { crate::mem::memcpy(old.start as usize as *mut u8, now.start as usize as *const u8, len) };
    // SAFETY: our own fresh mapping.
    let _ = unsafe { sys::mprotect(old.start as usize, len, PROT_RX) };
}

/// The image's vdso copy is mapped at its old address: make each of its exported functions jump
/// to the live vdso's function of the same name, or return -ENOSYS (glibc then makes the system
/// call) when this kernel has none. Functions too short for the jump are left alone: those are
/// the signal-return trampolines, which only make a system call.
pub fn redirect(ctx: &Ctx, live: Range) {
    let Some(text) = vdso_text(ctx) else { return };
    let len = text.len() as usize;
    // Parse a private copy, so that the code being patched is never read through a reference.
    let copy = read_copy(ctx, &text);
    // SAFETY: our own mapping of `len` bytes, unmapped only at the end of this function.
    let old_image = unsafe { core::slice::from_raw_parts(copy as *const u8, len) };
    let Some(old) = Vdso::parse(old_image, text.start as usize) else {
        die_at("the image's copy of the vdso is not a valid ELF image", text.start, 0)
    };
    // SAFETY: the live vdso stays mapped and readable; it is not written.
    let live_image = (!live.is_empty()).then(|| unsafe { core::slice::from_raw_parts(live.start as usize as *const u8, live.len() as usize) });
    let new = match live_image {
        Some(img) => match Vdso::parse(img, live.start as usize) {
            Some(v) => Some(v),
            None => die_at("this kernel's vdso is not a valid ELF image", live.start, 0),
        },
        None => None,
    };
    let (start, end) = (text.start as usize, text.end as usize);
    // SAFETY: the copy's own area, mapped by map_area.
    if let Err(e) = unsafe { sys::mprotect(start, len, PROT_RW) } {
        die_at("cannot make the vdso copy writable", text.start, e.into_raw());
    }
    let mut buf = [0u8; dmtcp_arch::JUMP_MAX];
    for f in old.functions() {
        let (at, n) = match new.as_ref().and_then(|v| v.lookup(f.name)) {
            Some(target) => dmtcp_arch::encode_jump(f.addr, target.addr, &mut buf),
            None => dmtcp_arch::encode_enosys(f.addr, &mut buf),
        };
        let code = f.addr & !1; // bit 0 marks Thumb code on ARM
        if at < start || at + n > end || at + n > code + f.size {
            continue;
        }
        // SAFETY: [at, at + n) lies inside the function, inside the copy's writable area.
        unsafe { crate::mem::memcpy(at as *mut u8, buf.as_ptr(), n) };
    }
    // SAFETY: back to the area's own protection; then our temporary copy goes.
    unsafe {
        if let Err(e) = sys::mprotect(start, len, prot_bits(text.prot)) {
            die_at("cannot set memory protection", text.start, e.into_raw());
        }
        let _ = sys::munmap(copy, len);
    }
    dmtcp_arch::sync_icache(start, len);
}
