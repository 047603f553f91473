//! `kenosis diff`: what changed between two models.
