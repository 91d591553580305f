//! CSV parts: the one CSV contract ([`csv`]), their compression ([`codec`]), writing them from
//! phase 1 with bounded memory ([`writer`]) and reading them back in phase 3 ([`reader`]).

pub mod codec;
pub mod csv;
pub mod reader;
pub mod writer;
