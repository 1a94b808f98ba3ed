//! The cluster metadata image.
