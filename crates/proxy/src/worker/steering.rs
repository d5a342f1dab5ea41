//! Steering in the kernel: a classic-BPF program on each listener's reuseport group
//! (`SO_ATTACH_REUSEPORT_CBPF`, as Envoy does) that picks the socket, hence the worker, from the worker
//! field of the destination connection ID ([`CidLayout`]). Sockets are bound in worker order, so the
//! socket index is the worker index. A datagram the program cannot read (too short, a client ID too
//! short to have the byte) returns an index past the group and the kernel falls back to its own hash;
//! the worker that gets it hands it to its owner in user space.

use std::io;
use std::os::fd::AsRawFd;

use crate::frontend::cid::CidLayout;

/// `BPF_LD | BPF_B | BPF_ABS`: A = packet byte at k.
const LDB: u16 = 0x30;
/// `BPF_LD | BPF_W | BPF_LEN`: A = packet length.
const LD_LEN: u16 = 0x80;
/// `BPF_JMP | BPF_JSET | BPF_K`.
const JSET: u16 = 0x45;
/// `BPF_JMP | BPF_JGE | BPF_K`.
const JGE: u16 = 0x35;
/// `BPF_JMP | BPF_JGT | BPF_K`.
const JGT: u16 = 0x25;
/// `BPF_JMP | BPF_JA`.
const JA: u16 = 0x05;
/// `BPF_ALU | BPF_AND | BPF_K`.
const AND: u16 = 0x54;
/// `BPF_ALU | BPF_MOD | BPF_K`.
const MOD: u16 = 0x94;
/// `BPF_RET | BPF_A`.
const RET_A: u16 = 0x16;
/// `BPF_RET | BPF_K`.
const RET_K: u16 = 0x06;
/// Past every group: the kernel picks a socket by its hash.
const FALLBACK: u32 = u32::MAX;

/// One instruction: (code, jump if true, jump if false, k).
type Insn = (u16, u8, u8, u32);

/// The program for `layout`: offset 0 is the first byte of the UDP payload.
pub(super) fn program(layout: &CidLayout) -> Vec<Insn> {
    let (w, mask) = layout.worker_field();
    let w = w as u32;
    vec![
        (LDB, 0, 0, 0),                       // 0: A = first byte
        (JSET, 4, 0, 0x80),                   // 1: long header -> 6
        (LD_LEN, 0, 0, 0),                    // 2: short header
        (JGE, 0, 10, 2 + w),                  // 3: no worker field -> 14
        (LDB, 0, 0, 1 + w),                   // 4: A = DCID[w]
        (JA, 0, 0, 5),                        // 5: -> 11
        (LD_LEN, 0, 0, 0),                    // 6: long header
        (JGE, 0, 6, 7 + w),                   // 7: too short -> 14
        (LDB, 0, 0, 5),                       // 8: A = DCID length
        (JGT, 0, 4, w),                       // 9: no worker field -> 14
        (LDB, 0, 0, 6 + w),                   // 10: A = DCID[w]
        (AND, 0, 0, u32::from(mask)),         // 11: the field's bits
        (MOD, 0, 0, layout.workers() as u32), // 12
        (RET_A, 0, 0, 0),                     // 13: socket A
        (RET_K, 0, 0, FALLBACK),              // 14: the kernel's hash
    ]
}

/// Attaches the program to the reuseport group `socket` belongs to.
#[allow(unsafe_code)]
pub(super) fn attach(socket: &impl AsRawFd, layout: &CidLayout) -> io::Result<()> {
    let mut filter: Vec<libc::sock_filter> = program(layout)
        .into_iter()
        .map(|(code, jt, jf, k)| libc::sock_filter { code, jt, jf, k })
        .collect();
    let prog = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_mut_ptr(),
    };
    // SAFETY: `prog` points at `filter`, alive for the call; the kernel copies the program.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_REUSEPORT_CBPF,
            std::ptr::from_ref(&prog).cast(),
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the program the way the kernel would, for the opcodes it uses.
    fn run(program: &[Insn], packet: &[u8]) -> u32 {
        let (mut a, mut pc) = (0u32, 0usize);
        loop {
            let (code, jt, jf, k) = program[pc];
            pc += 1;
            let jump = |cond: bool| usize::from(if cond { jt } else { jf });
            match code {
                LDB => match packet.get(k as usize) {
                    Some(&b) => a = u32::from(b),
                    None => return 0, // an out-of-bounds load ends the program with 0
                },
                LD_LEN => a = packet.len() as u32,
                JSET => pc += jump(a & k != 0),
                JGE => pc += jump(a >= k),
                JGT => pc += jump(a > k),
                JA => pc += k as usize,
                AND => a &= k,
                MOD => a %= k,
                RET_A => return a,
                RET_K => return k,
                other => panic!("opcode {other:#x}"),
            }
        }
    }

    #[test]
    fn the_program_picks_the_worker_the_layout_names() {
        let mut rng = fastrand::Rng::with_seed(11);
        let key = [0x42; 16];
        for (sid, key, workers) in [
            (None, None, 2),
            (Some((&[7u8, 7, 7][..], 0)), None, 3),
            (None, None, 64),
            (Some((&[7u8, 7, 7][..], 5)), Some(&key), 3),
        ] {
            let layout = CidLayout::new(sid, key, workers);
            let prog = program(&layout);
            for worker in 0..workers {
                let cid = layout.issue(worker, &mut rng);
                let mut short = vec![0x41];
                short.extend_from_slice(&cid);
                short.extend_from_slice(&[0; 30]);
                assert_eq!(run(&prog, &short), worker as u32);
                let mut long = vec![0xc3, 0, 0, 0, 1, cid.len() as u8];
                long.extend_from_slice(&cid);
                long.extend_from_slice(&[0; 40]);
                assert_eq!(run(&prog, &long), worker as u32);
                assert_eq!(layout.owner(&long), worker);
            }
            // A client's random Initial ID: the program and the layout agree on its worker.
            for _ in 0..100 {
                let mut initial = vec![0xc0, 0, 0, 0, 1, 16];
                initial.extend((0..16 + 40).map(|_| rng.u8(..)));
                assert_eq!(run(&prog, &initial) as usize, layout.owner(&initial));
            }
            for tiny in [&[0x40, 1][..], &[0xc0, 0, 0, 0, 1, 1, 9, 0, 0, 0, 0, 0]] {
                let got = run(&prog, tiny);
                if key.is_none() {
                    assert_eq!(got, FALLBACK, "too short for a worker byte");
                } else {
                    // The field is in the first CID byte: one byte of ID is enough.
                    assert_eq!(got as usize, layout.owner(tiny));
                }
            }
        }
    }
}
