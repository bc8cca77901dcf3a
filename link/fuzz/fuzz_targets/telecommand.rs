//! Arbitrary bytes into the telecommand receiver: nothing unauthenticated ever comes out.
#![no_main]

use kestrel_link::security::SecurityAssociation;
use kestrel_link::telecommand::TcReceiver;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut receiver = TcReceiver::new(SecurityAssociation::new(2, &[5; 32], false), 42);
    let frames = receiver.push(data);
    assert!(frames.is_empty(), "a frame without the key was accepted");
});
