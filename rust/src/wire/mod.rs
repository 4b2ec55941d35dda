//! The bytes on the wire: frame header and checksum, and the index codes sparse stages send.
//! Nothing here knows how values are compressed; `codecs` builds on it.

pub mod checksum;
pub mod frame;
pub mod index_coding;
pub mod rice;
