//! A seeded generator of hostile bytes: a valid input mutated by byte flips, cuts, repeats,
//! hostile tokens (huge and negative numbers, deep nesting, invalid UTF-8, NULs, long lines)
//! and numbers swapped for extreme ones.

/// splitmix64: a tiny deterministic generator, the same on every machine.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// True one time in `n`.
    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// The seed of case `case` of the reader named `name`: each case is reproducible alone.
pub fn case_seed(base: u64, name: &str, case: usize) -> u64 {
    let name_hash = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    Rng::new(base ^ name_hash ^ (case as u64).wrapping_mul(0x2545_f491_4f6c_dd1d)).next()
}

/// Numbers that break sizes, offsets and parsers.
const NUMBERS: [&str; 16] = [
    "0",
    "-1",
    "1e308",
    "-1e308",
    "1e999",
    "18446744073709551616",
    "18446744073709551615",
    "9223372036854775808",
    "4294967296",
    "2147483648",
    "10000000000",
    "NaN",
    "-0",
    "0.5",
    "1E-400",
    "00000000000000000000000000000001",
];

/// Short tokens of every kind of text these readers parse.
const TOKENS: [&[u8]; 24] = [
    b"null",
    b"true",
    b"[]",
    b"{}",
    b"\"\"",
    b"\"x\"",
    b"\"\\ud800\"",
    b"\"\\u0000\"",
    b"\\",
    b"\"",
    b",",
    b":",
    b"\t",
    b"\n",
    b"\r\n",
    b"\r",
    b"\0",
    b"\xff\xfe",
    b"\xc3",
    b"\xed\xa0\x80",
    b"\xef\xbb\xbf",
    b"}}}}",
    b"]]]]",
    b"\"a\":1,\"a\":2",
];

/// `seed` changed by one to four mutations.
pub fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut bytes = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        mutate_once(rng, &mut bytes);
    }
    bytes
}

fn mutate_once(rng: &mut Rng, bytes: &mut Vec<u8>) {
    let at = rng.below(bytes.len() + 1);
    match rng.below(12) {
        0 if at < bytes.len() => bytes[at] ^= 1 << rng.below(8),
        1 if at < bytes.len() => bytes[at] = rng.next() as u8,
        2 => bytes.truncate(at),
        3 => {
            let end = at + rng.below(bytes.len() - at + 1);
            bytes.drain(at..end);
        }
        4 => repeat_range(rng, bytes, at),
        5 => insert(bytes, at, TOKENS[rng.below(TOKENS.len())]),
        6 | 7 => swap_number(rng, bytes),
        8 => insert(bytes, at, &nesting(rng)),
        9 => put_u64(rng, bytes),
        10 if rng.one_in(20) => insert(bytes, at, &long_line(rng)),
        11 if rng.one_in(50) => bytes.clear(),
        _ => insert(bytes, at, rng.pick(&NUMBERS).as_bytes()),
    }
}

fn insert(bytes: &mut Vec<u8>, at: usize, what: &[u8]) {
    bytes.splice(at..at, what.iter().copied());
}

/// A range of the input, copied one to a hundred times after itself (duplicated fields, rows).
fn repeat_range(rng: &mut Rng, bytes: &mut Vec<u8>, at: usize) {
    let len = rng.below((bytes.len() - at).min(256) + 1);
    let copy = bytes[at..at + len].repeat(1 + rng.below(100));
    insert(bytes, at + len, &copy);
}

/// Replaces the digits of one number in the input with an extreme number.
fn swap_number(rng: &mut Rng, bytes: &mut Vec<u8>) {
    let digits: Vec<usize> = (0..bytes.len())
        .filter(|&i| bytes[i].is_ascii_digit() && (i == 0 || !bytes[i - 1].is_ascii_digit()))
        .collect();
    if digits.is_empty() {
        return;
    }
    let start = *rng.pick(&digits);
    let end = (start..bytes.len())
        .find(|&i| !bytes[i].is_ascii_digit())
        .unwrap_or(bytes.len());
    bytes.splice(start..end, rng.pick(&NUMBERS).bytes());
}

/// Brackets or braces nested up to 100 000 deep, sometimes closed.
fn nesting(rng: &mut Rng) -> Vec<u8> {
    let depth = 1 + rng.below(100_000);
    let (open, close): (&[u8], &[u8]) = match rng.below(3) {
        0 => (b"[", b"]"),
        1 => (b"{\"a\":", b"}"),
        _ => (b"[{\"b\":", b"}]"),
    };
    let mut text = open.repeat(depth);
    if rng.one_in(2) {
        text.extend(close.repeat(depth));
    }
    text
}

/// Overwrites 8 bytes with a little-endian extreme u64; at the start one time in three (the
/// length prefix of a safetensors file).
fn put_u64(rng: &mut Rng, bytes: &mut [u8]) {
    if bytes.len() < 8 {
        return;
    }
    let at = if rng.one_in(3) {
        0
    } else {
        rng.below(bytes.len() - 7)
    };
    let random = rng.next() % (2 * bytes.len() as u64);
    let value = *rng.pick(&[
        u64::MAX,
        1 << 63,
        1 << 32,
        10_000_000_000,
        bytes.len() as u64,
        bytes.len() as u64 + 1,
        random,
    ]);
    bytes[at..at + 8].copy_from_slice(&value.to_le_bytes());
}

/// A line of up to 2 MiB (longer than the data readers' 1 MiB limit).
fn long_line(rng: &mut Rng) -> Vec<u8> {
    vec![*rng.pick(b"a \t,\"\xff"); rng.below(2 << 20)]
}
