//! The codecs: each turns float32 values into a payload and back (added, weighted, into a buffer),
//! and `pipeline` chains sparsifiers and one terminal codec into a frame.

pub mod codec;
pub mod eden;
pub mod identity;
pub mod input;
pub mod pipeline;
pub mod qsgd;
pub mod quantize;
pub mod registry;
pub mod sign;
pub mod spec;
pub mod stages;
