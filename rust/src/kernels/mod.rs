//! Slice kernels the codecs are built from: bit packing, transforms, selection, seeded masks,
//! randomness and the SIMD and uninitialized-memory helpers. They know nothing of frames.

pub mod bitpack;
pub mod hadamard;
pub(crate) mod huge_pages;
pub mod lloyd_max;
pub(crate) mod prefetch;
pub(crate) mod quant_chunk;
pub mod rng;
pub mod seeded_mask;
pub(crate) mod shared;
pub(crate) mod simd;
pub mod topk;
pub(crate) mod uninit;
