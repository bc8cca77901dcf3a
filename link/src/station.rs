//! Station sign-on: how a ground station's front end proves to the ground station service that it
//! is a station the mission declared, and the service proves itself back, before the service takes
//! a CADU from it or sends it a telecommand.
//!
//! Each station has a 256-bit key of its own (a key file named in the mission file, shared by the
//! station and the service only). Three fixed-length messages, then the CADU stream as before:
//!
//! ```text
//! station -> ground  hello (53):     "KSTN" | version 1 | name (32, zero padded) | station nonce (16)
//! ground  -> station challenge (48): ground nonce (16) | HMAC-SHA-256(key, "kestrel ground"  | name | both nonces)
//! station -> ground  proof (32):     HMAC-SHA-256(key, "kestrel station" | name | both nonces)
//! ```
//! Each side's nonce makes the other's MAC fresh, so a recorded sign-on never works again; the two
//! labels keep either MAC from being replayed as the other. The service answers a hello naming no
//! declared station by closing the connection without a byte. Sign-on authenticates the two ends
//! when the connection opens; the frames that follow carry their own SDLS authentication (and
//! encryption when the mission sets `encrypt`), which is what protects them in transit.

use std::io::{Read, Write};

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

const MAGIC: [u8; 4] = *b"KSTN";
const VERSION: u8 = 1;
/// Longest station name, in bytes.
pub const NAME_LEN: usize = 32;
const NONCE_LEN: usize = 16;
const MAC_LEN: usize = 32;
pub const HELLO_LEN: usize = MAGIC.len() + 1 + NAME_LEN + NONCE_LEN;
pub const CHALLENGE_LEN: usize = NONCE_LEN + MAC_LEN;
pub const PROOF_LEN: usize = MAC_LEN;
/// What a station sends before its first CADU: hello and proof. A link simulator that corrupts
/// the downlink leaves these bytes alone: they cross the station's terrestrial link, not the radio.
pub const STATION_SIGN_ON_LEN: usize = HELLO_LEN + PROOF_LEN;

type HmacSha256 = Hmac<Sha256>;

/// Why a sign-on failed.
#[derive(Debug, thiserror::Error)]
pub enum SignOnError {
    #[error("not a station sign-on: {0}")]
    Malformed(&'static str),
    #[error("station name `{0}` is not 1 to 32 letters, digits, `-`, `_` or `.`")]
    BadName(String),
    #[error("the station's proof does not verify under its key")]
    StationNotAuthentic,
    #[error("the ground's answer does not verify under the station's key (not the mission's ground, or another key)")]
    GroundNotAuthentic,
    #[error("the ground closed the connection during sign-on (an unknown station, or its proof refused)")]
    Closed,
    #[error("sign-on I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("no randomness for a nonce: {0}")]
    Random(String),
}

/// A station's name as sign-on carries it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StationName(String);

impl StationName {
    pub fn new(name: &str) -> Result<Self, SignOnError> {
        let valid = (1..=NAME_LEN).contains(&name.len())
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if valid { Ok(Self(name.to_owned())) } else { Err(SignOnError::BadName(name.escape_debug().to_string())) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn padded(&self) -> [u8; NAME_LEN] {
        let mut out = [0u8; NAME_LEN];
        out[..self.0.len()].copy_from_slice(self.0.as_bytes());
        out
    }
}

impl std::fmt::Display for StationName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The station's first message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    pub name: StationName,
    nonce: [u8; NONCE_LEN],
}

impl Hello {
    pub fn new(name: StationName) -> Result<Self, SignOnError> {
        Ok(Self { name, nonce: random_nonce()? })
    }

    pub fn encode(&self) -> [u8; HELLO_LEN] {
        let mut out = [0u8; HELLO_LEN];
        out[..4].copy_from_slice(&MAGIC);
        out[4] = VERSION;
        out[5..5 + NAME_LEN].copy_from_slice(&self.name.padded());
        out[5 + NAME_LEN..].copy_from_slice(&self.nonce);
        out
    }

    pub fn decode(bytes: &[u8; HELLO_LEN]) -> Result<Self, SignOnError> {
        if bytes[..4] != MAGIC {
            return Err(SignOnError::Malformed("it does not begin with KSTN"));
        }
        if bytes[4] != VERSION {
            return Err(SignOnError::Malformed("unknown sign-on version"));
        }
        let field = &bytes[5..5 + NAME_LEN];
        let end = field.iter().position(|&b| b == 0).unwrap_or(NAME_LEN);
        if field[end..].iter().any(|&b| b != 0) {
            return Err(SignOnError::Malformed("the name's padding is not zeros"));
        }
        let name = std::str::from_utf8(&field[..end]).map_err(|_| SignOnError::Malformed("the name is not text"))?;
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&bytes[5 + NAME_LEN..]);
        Ok(Self { name: StationName::new(name)?, nonce })
    }
}

/// The ground's answer to a hello: its nonce, and its proof of the station's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    nonce: [u8; NONCE_LEN],
    ground_mac: [u8; MAC_LEN],
}

impl Challenge {
    /// The ground's answer to `hello` under the station's `key`.
    pub fn answer(hello: &Hello, key: &[u8; 32]) -> Result<Self, SignOnError> {
        let nonce = random_nonce()?;
        let ground_mac = mac(key, b"kestrel ground", hello, &nonce).finalize().into_bytes().into();
        Ok(Self { nonce, ground_mac })
    }

    pub fn encode(&self) -> [u8; CHALLENGE_LEN] {
        let mut out = [0u8; CHALLENGE_LEN];
        out[..NONCE_LEN].copy_from_slice(&self.nonce);
        out[NONCE_LEN..].copy_from_slice(&self.ground_mac);
        out
    }

    pub fn decode(bytes: &[u8; CHALLENGE_LEN]) -> Self {
        let (mut nonce, mut ground_mac) = ([0u8; NONCE_LEN], [0u8; MAC_LEN]);
        nonce.copy_from_slice(&bytes[..NONCE_LEN]);
        ground_mac.copy_from_slice(&bytes[NONCE_LEN..]);
        Self { nonce, ground_mac }
    }

    /// The station's check that the answer came from a holder of its key; then its proof.
    pub fn prove(&self, hello: &Hello, key: &[u8; 32]) -> Result<[u8; PROOF_LEN], SignOnError> {
        mac(key, b"kestrel ground", hello, &self.nonce)
            .verify_slice(&self.ground_mac)
            .map_err(|_| SignOnError::GroundNotAuthentic)?;
        Ok(mac(key, b"kestrel station", hello, &self.nonce).finalize().into_bytes().into())
    }

    /// The ground's check of the station's proof (in constant time).
    pub fn verify(&self, hello: &Hello, key: &[u8; 32], proof: &[u8; PROOF_LEN]) -> Result<(), SignOnError> {
        mac(key, b"kestrel station", hello, &self.nonce)
            .verify_slice(proof)
            .map_err(|_| SignOnError::StationNotAuthentic)
    }
}

fn mac(key: &[u8; 32], label: &[u8], hello: &Hello, ground_nonce: &[u8; NONCE_LEN]) -> HmacSha256 {
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(label);
    mac.update(&hello.name.padded());
    mac.update(&hello.nonce);
    mac.update(ground_nonce);
    mac
}

fn random_nonce() -> Result<[u8; NONCE_LEN], SignOnError> {
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::fill(&mut nonce).map_err(|e| SignOnError::Random(e.to_string()))?;
    Ok(nonce)
}

/// The station's side of sign-on over a blocking stream (the caller sets its timeouts).
pub fn sign_on(stream: &mut (impl Read + Write), name: &StationName, key: &[u8; 32]) -> Result<(), SignOnError> {
    let hello = Hello::new(name.clone())?;
    stream.write_all(&hello.encode())?;
    let mut answer = [0u8; CHALLENGE_LEN];
    stream.read_exact(&mut answer).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset => SignOnError::Closed,
        _ => SignOnError::Io(e),
    })?;
    let proof = Challenge::decode(&answer).prove(&hello, key)?;
    stream.write_all(&proof)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 32] = [9; 32];

    fn hello() -> Hello {
        Hello::new(StationName::new("svalbard-1").expect("name")).expect("hello")
    }

    #[test]
    fn a_station_and_the_ground_holding_one_key_accept_each_other() {
        let hello = Hello::decode(&hello().encode()).expect("decodes");
        assert_eq!(hello.name.as_str(), "svalbard-1");
        let challenge = Challenge::decode(&Challenge::answer(&hello, &KEY).expect("answer").encode());
        let proof = challenge.prove(&hello, &KEY).expect("the ground is authentic");
        challenge.verify(&hello, &KEY, &proof).expect("the station is authentic");
    }

    #[test]
    fn another_key_a_replayed_proof_or_a_mirrored_mac_is_refused() {
        let hello = hello();
        let challenge = Challenge::answer(&hello, &KEY).expect("answer");
        let proof = challenge.prove(&hello, &KEY).expect("proof");
        assert!(matches!(challenge.verify(&hello, &[8; 32], &proof), Err(SignOnError::StationNotAuthentic)));
        assert!(matches!(challenge.prove(&hello, &[8; 32]), Err(SignOnError::GroundNotAuthentic)));
        // the same hello answered again: a fresh ground nonce, so the old proof is worthless
        let again = Challenge::answer(&hello, &KEY).expect("answer");
        assert!(matches!(again.verify(&hello, &KEY, &proof), Err(SignOnError::StationNotAuthentic)));
        // the ground's own MAC sent back as the station's proof
        assert!(matches!(challenge.verify(&hello, &KEY, &challenge.ground_mac), Err(SignOnError::StationNotAuthentic)));
    }

    #[test]
    fn hellos_that_are_not_sign_ons_are_named() {
        let mut bytes = hello().encode();
        bytes[0] = b'X';
        assert!(matches!(Hello::decode(&bytes), Err(SignOnError::Malformed(_))));
        let mut bytes = hello().encode();
        bytes[4] = 2;
        assert!(matches!(Hello::decode(&bytes), Err(SignOnError::Malformed(_))));
        let mut bytes = hello().encode();
        bytes[5 + 3] = b'\n';
        assert!(matches!(Hello::decode(&bytes), Err(SignOnError::BadName(_))));
        let mut bytes = hello().encode();
        bytes[5 + NAME_LEN - 1] = b'a';
        assert!(matches!(Hello::decode(&bytes), Err(SignOnError::Malformed(_))));
        assert!(StationName::new("").is_err() && StationName::new(&"a".repeat(33)).is_err());
    }
}
