//! Ready protocols: [`Raw`], [`HelloAck`] and [`Gateway`].

mod gateway;
mod hello_ack;
mod json;
mod raw;



pub use raw::Raw;
