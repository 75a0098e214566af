//! Disks: the validated layout, the planner (pure), GPT writing, filesystems.

pub mod gpt;
pub mod plan;
pub mod spec;
