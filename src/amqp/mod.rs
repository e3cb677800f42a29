pub mod address;
pub mod message;
