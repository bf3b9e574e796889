//! Talking to the OpenClaw gateway of a tenant's image: the preflight that has it check its
//! own config before a rollout.

pub mod preflight;
