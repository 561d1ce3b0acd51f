//! The bottom layer: small, safe wrappers around PostgreSQL's C API and SPI that every
//! other layer uses, and that use nothing of the extension above them.

pub mod backend;
pub mod clock;
pub mod errors;
pub mod extension;
pub mod http_client;
pub mod jsonb;
pub mod plans;
pub mod projection;
pub mod redaction;
pub mod role;
pub mod session_text;
pub mod spi;
pub mod timer;
pub mod transaction;
