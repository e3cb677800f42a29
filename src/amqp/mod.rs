pub mod address;
pub mod frame;
pub mod message;
pub mod outbound;
pub mod session;
