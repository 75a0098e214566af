//! Disks: the validated layout, the planner (pure), GPT writing, filesystems.

pub mod fstab;
pub mod gpt;
pub mod guard;
pub mod luks;
pub mod md;
pub mod mkfs;
pub mod plan;
pub mod plan_json;
pub mod vfat;
