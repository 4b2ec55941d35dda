//! fedcodec: compression codecs, a checksummed wire format and streaming aggregation for
//! federated-learning model updates. The core works on slices; `python` adds the PyO3 module.
#![cfg_attr(not(feature = "python"), deny(unsafe_code))]

pub mod accumulator;
pub mod codecs;
pub mod error;
pub mod kernels;
pub mod robust;
pub mod secagg;
pub mod wire;

// The flat module paths of the public API (and of code written against them) stay valid.
pub use codecs::{eden, pipeline, qsgd, quantize, sign, spec};
pub use kernels::{bitpack, hadamard, lloyd_max, rng, seeded_mask, topk};
pub use wire::{checksum, frame, index_coding, rice};

#[cfg(feature = "python")]
mod python;

pub use accumulator::Accumulator;
pub use error::{CodecError, Result};
pub use pipeline::{decode, encode, ParsedFrame};
pub use spec::{Spec, Stage};
