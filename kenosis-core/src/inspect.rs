//! `kenosis inspect`: what a model holds.
