//! OS layer.
