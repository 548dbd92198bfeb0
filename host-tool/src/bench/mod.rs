//! `host-tool bench …`: accuracy and speed of the face pipeline.

pub mod blur;
pub mod detect;
pub mod fleet;
pub mod lfw;
pub mod link;
pub mod liveness;
pub mod speed;
pub mod trained;
