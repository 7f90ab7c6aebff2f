//! Random numbers for jitter: spreading retries (the vault client, the credential chain) and
//! `--watch` checks (the supervisor) so that a fleet started together does not act together. Not
//! for anything secret: a failing system source only means no jitter.

/// A random number for jitter.
#[must_use]
pub(crate) fn random() -> u64 {
    use aws_lc_rs::rand::SecureRandom as _;
    let mut bytes = [0u8; 8];
    // Jitter only spreads retries; should the system source fail, no jitter is still correct.
    let _ = aws_lc_rs::rand::SystemRandom::new().fill(&mut bytes);
    u64::from_le_bytes(bytes)
}
