//! Arbitrary bytes as a product envelope: an error or a product, never a panic; and whatever
//! decodes re-encodes to something that decodes to the same product.
#![no_main]

use kestrel_link::product::{Envelope, Product};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = Envelope::parse(data);
    if let Ok(product) = Product::decode(data) {
        let again = Product::decode(&product.encode().bytes).expect("re-encoded product decodes");
        assert_eq!(format!("{again:?}"), format!("{product:?}"));
    }
});
