//! Content keys and records for the build cache and offline builds.
