//! fedcodec: compression codecs, a checksummed wire format and streaming aggregation for
//! federated-learning model updates. The core works on slices; `python` adds the PyO3 module.
#![cfg_attr(not(feature = "python"), deny(unsafe_code))]

pub mod accumulator;
pub mod bitpack;
pub mod checksum;
pub mod eden;
pub mod error;
pub mod frame;
pub mod hadamard;
pub mod index_coding;
pub mod lloyd_max;
pub mod pipeline;
pub mod qsgd;
pub mod quantize;
pub mod rice;
pub mod rng;
pub mod robust;
pub mod seeded_mask;
pub mod sign;
mod simd;
pub mod spec;
pub mod topk;
mod uninit;

#[cfg(feature = "python")]
mod python;

pub use accumulator::Accumulator;
pub use error::{CodecError, Result};
pub use pipeline::{decode, encode, ParsedFrame};
pub use spec::{Spec, Stage};
