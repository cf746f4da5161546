//! Test support shared by the parsers' hostile-input tests.

/// Deterministic pseudo-random bytes biased towards the syntax characters
/// of the configuration files parsed here.
pub fn garbage(seed: u64, len: usize) -> Vec<u8> {
    let alphabet = b"ab #\"\\=,:()!%*\n\t\r@ALLNOPASSWD:/ssh-rsa AAAA\xff";
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            alphabet
                .get((x % alphabet.len() as u64) as usize)
                .copied()
                .unwrap_or(b'a')
        })
        .collect()
}
