//! The terminal codecs, one line each: a spec name or a frame's stage id is looked up here, and
//! nowhere else. Adding a codec is an `impl Codec` and a `Kind` beside its kernels, plus its line.

use crate::codecs::codec::Kind;
use crate::codecs::{eden, identity, qsgd, quantize, sign};

/// Every terminal codec, in wire-id order.
pub static CODECS: &[&Kind] = &[
    &identity::FLOAT32,
    &identity::FLOAT16,
    &identity::BFLOAT16,
    &quantize::QUANT,
    &qsgd::QSGD,
    &eden::EDEN,
    &sign::SIGN,
];

/// The codec a spec names (any of its names, lower case).
#[must_use]
pub fn by_name(name: &str) -> Option<&'static Kind> {
    CODECS.iter().copied().find(|k| k.names.contains(&name))
}

/// The codec a frame's stage id names.
#[must_use]
pub fn by_id(id: u8) -> Option<&'static Kind> {
    CODECS.iter().copied().find(|k| k.id == id)
}

/// How each codec is written, for the error that lists them: `none, f16, …, quant:B`.
#[must_use]
pub fn usages() -> String {
    CODECS
        .iter()
        .map(|k| k.usage)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_names_are_unique_and_every_example_parses_back() {
        for (i, a) in CODECS.iter().enumerate() {
            for b in &CODECS[i + 1..] {
                assert_ne!(a.id, b.id, "{} and {}", a.usage, b.usage);
                assert!(a.names.iter().all(|n| !b.names.contains(n)), "{}", a.usage);
            }
            for name in a.names {
                assert!(
                    !["topk", "randk", ""].contains(name),
                    "{name} is a sparsifier's name"
                );
            }
            let spec = crate::Spec::parse(a.example).unwrap();
            assert_eq!(spec.to_string(), a.example);
        }
    }
}
