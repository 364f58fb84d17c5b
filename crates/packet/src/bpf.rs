//! Classic BPF: the filters `tcpdump -ddd 'EXPRESSION'` prints, run on
//! frames in user space (captures read from files) with the same meaning the
//! kernel gives them on a live socket.
//!
//! Compiling filter expressions is libpcap's job; hopscope takes the
//! compiled program so that it needs no C library, and checks it before use.

/// One instruction (struct sock_filter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Instruction {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

/// A checked classic BPF program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BpfProgram {
    instructions: Vec<Instruction>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BpfError {
    #[error("line {line}: {what}")]
    Syntax { line: usize, what: String },
    #[error("instruction {at}: {what}")]
    Invalid { at: usize, what: &'static str },
}

/// Instructions a program may have at most (the kernel's BPF_MAXINSNS).
const MAX_INSTRUCTIONS: usize = 4096;

impl BpfProgram {
    /// Parses `tcpdump -ddd` output: a count, then one "code jt jf k" line per instruction.
    pub fn parse(text: &str) -> Result<Self, BpfError> {
        let mut lines = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .enumerate();
        let (_, count) = lines.next().ok_or(BpfError::Syntax {
            line: 1,
            what: "empty program".into(),
        })?;
        let count: usize = count.parse().map_err(|_| BpfError::Syntax {
            line: 1,
            what: format!("{count:?} is not a count"),
        })?;
        let mut instructions = Vec::with_capacity(count.min(MAX_INSTRUCTIONS));
        for (i, line) in lines {
            let n: Vec<u64> = line
                .split_whitespace()
                .map(|v| {
                    v.parse::<u64>().map_err(|_| BpfError::Syntax {
                        line: i + 1,
                        what: format!("{v:?} is not a number"),
                    })
                })
                .collect::<Result<_, _>>()?;
            let [code, jt, jf, k] = n[..] else {
                return Err(BpfError::Syntax {
                    line: i + 1,
                    what: "expected: code jt jf k".into(),
                });
            };
            instructions.push(Instruction {
                code: code as u16,
                jt: jt as u8,
                jf: jf as u8,
                k: k as u32,
            });
        }
        if instructions.len() != count {
            return Err(BpfError::Syntax {
                line: 1,
                what: format!(
                    "{count} instructions announced, {} given",
                    instructions.len()
                ),
            });
        }
        Self::new(instructions)
    }

    /// Checks a program as the kernel does: bounded, jumps forward and in range, ends in a return.
    pub fn new(instructions: Vec<Instruction>) -> Result<Self, BpfError> {
        if instructions.is_empty() || instructions.len() > MAX_INSTRUCTIONS {
            return Err(BpfError::Invalid {
                at: 0,
                what: "a program has 1 to 4096 instructions",
            });
        }
        let n = instructions.len();
        for (at, ins) in instructions.iter().enumerate() {
            match ins.code & 0x07 {
                0x05 => {
                    let targets = if ins.code & 0xf0 == 0x00 {
                        [at as u64 + 1 + u64::from(ins.k), 0]
                    } else {
                        [
                            at as u64 + 1 + u64::from(ins.jt),
                            at as u64 + 1 + u64::from(ins.jf),
                        ]
                    };
                    if targets.iter().any(|&t| t >= n as u64) {
                        return Err(BpfError::Invalid {
                            at,
                            what: "jump past the end",
                        });
                    }
                }
                // loads from scratch memory (LD/LDX MEM) and stores (ST/STX)
                0x00..=0x03
                    if (ins.code & 0xe0 == 0x60 || ins.code & 0x07 >= 0x02) && ins.k >= 16 =>
                {
                    return Err(BpfError::Invalid {
                        at,
                        what: "scratch memory index past 15",
                    });
                }
                0x04 if ins.code & 0xf0 == 0x30 && ins.code & 0x08 == 0 && ins.k == 0 => {
                    return Err(BpfError::Invalid {
                        at,
                        what: "division by constant zero",
                    });
                }
                _ => {}
            }
        }
        if instructions[n - 1].code & 0x07 != 0x06 {
            return Err(BpfError::Invalid {
                at: n - 1,
                what: "the last instruction must return",
            });
        }
        Ok(Self { instructions })
    }

    pub fn instructions(&self) -> &[Instruction] {
        &self.instructions
    }

    /// Runs the program on a frame; true when it accepts it (returns non-zero).
    /// `wire_len` is the frame's length on the wire (BPF_LEN).
    pub fn accepts(&self, frame: &[u8], wire_len: u32) -> bool {
        let (mut a, mut x) = (0u32, 0u32);
        let mut mem = [0u32; 16];
        let mut pc = 0usize;
        let load = |at: u64, size: usize| -> Option<u32> {
            let at = usize::try_from(at).ok()?;
            let b = frame.get(at..at.checked_add(size)?)?;
            Some(match size {
                1 => u32::from(b[0]),
                2 => u32::from(u16::from_be_bytes([b[0], b[1]])),
                _ => u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
            })
        };
        // jumps only go forward, so the loop ends within the program's length
        while let Some(ins) = self.instructions.get(pc) {
            pc += 1;
            let k = ins.k;
            let size = match ins.code & 0x18 {
                0x00 => 4,
                0x08 => 2,
                _ => 1,
            };
            match ins.code & 0x07 {
                // LD
                0x00 => {
                    a = match ins.code & 0xe0 {
                        0x00 => k,
                        0x20 => match load(u64::from(k), size) {
                            Some(v) => v,
                            None => return false,
                        },
                        0x40 => match load(u64::from(x) + u64::from(k), size) {
                            Some(v) => v,
                            None => return false,
                        },
                        0x60 => mem[(k & 15) as usize],
                        0x80 => wire_len,
                        _ => return false,
                    }
                }
                // LDX
                0x01 => {
                    x = match ins.code & 0xe0 {
                        0x00 => k,
                        0x60 => mem[(k & 15) as usize],
                        0x80 => wire_len,
                        0xa0 => match load(u64::from(k), 1) {
                            Some(v) => (v & 0x0f) * 4,
                            None => return false,
                        },
                        _ => return false,
                    }
                }
                0x02 => mem[(k & 15) as usize] = a,
                0x03 => mem[(k & 15) as usize] = x,
                // ALU
                0x04 => {
                    let operand = if ins.code & 0x08 != 0 { x } else { k };
                    a = match ins.code & 0xf0 {
                        0x00 => a.wrapping_add(operand),
                        0x10 => a.wrapping_sub(operand),
                        0x20 => a.wrapping_mul(operand),
                        0x30 => match a.checked_div(operand) {
                            Some(v) => v,
                            None => return false,
                        },
                        0x40 => a | operand,
                        0x50 => a & operand,
                        0x60 => a.checked_shl(operand).unwrap_or(0),
                        0x70 => a.checked_shr(operand).unwrap_or(0),
                        0x80 => a.wrapping_neg(),
                        0x90 => match a.checked_rem(operand) {
                            Some(v) => v,
                            None => return false,
                        },
                        0xa0 => a ^ operand,
                        _ => return false,
                    }
                }
                // JMP
                0x05 => {
                    let operand = if ins.code & 0x08 != 0 { x } else { k };
                    let taken = match ins.code & 0xf0 {
                        0x00 => {
                            pc += k as usize;
                            continue;
                        }
                        0x10 => a == operand,
                        0x20 => a > operand,
                        0x30 => a >= operand,
                        0x40 => a & operand != 0,
                        _ => return false,
                    };
                    pc += usize::from(if taken { ins.jt } else { ins.jf });
                }
                // RET
                0x06 => return (if ins.code & 0x18 == 0x10 { a } else { k }) != 0,
                // MISC: TAX / TXA
                _ => {
                    if ins.code & 0xf8 == 0x00 {
                        x = a;
                    } else {
                        a = x;
                    }
                }
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `tcpdump -ddd 'udp port 53'` on an Ethernet link.
    const UDP_53: &str = "20\n40 0 0 12\n21 0 6 34525\n48 0 0 20\n21 0 15 17\n40 0 0 54\n21 12 0 53\n40 0 0 56\n21 10 11 53\n21 0 10 2048\n48 0 0 23\n21 0 8 17\n40 0 0 20\n69 6 0 8191\n177 0 0 14\n72 0 0 14\n21 2 0 53\n72 0 0 16\n21 0 1 53\n6 0 0 262144\n6 0 0 0\n";

    fn udp_frame(dport: u16) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 20 + 8];
        f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        f[14] = 0x45;
        f[23] = 17;
        f[34..36].copy_from_slice(&40000u16.to_be_bytes());
        f[36..38].copy_from_slice(&dport.to_be_bytes());
        f
    }

    #[test]
    fn runs_what_tcpdump_compiles() {
        let p = BpfProgram::parse(UDP_53).unwrap();
        assert_eq!(p.instructions().len(), 20);
        assert!(p.accepts(&udp_frame(53), 42));
        assert!(!p.accepts(&udp_frame(80), 42));
        // a frame too short for a load is rejected, not a panic
        assert!(!p.accepts(&udp_frame(53)[..20], 20));
    }

    #[test]
    fn rejects_programs_the_kernel_would() {
        assert!(
            BpfProgram::parse("1\n21 5 5 1\n").is_err(),
            "jump past the end"
        );
        assert!(BpfProgram::parse("1\n40 0 0 12\n").is_err(), "no return");
        assert!(BpfProgram::parse("2\n6 0 0 0\n").is_err(), "count mismatch");
        assert!(BpfProgram::parse("1\nsix 0 0 0\n").is_err());
    }
}
