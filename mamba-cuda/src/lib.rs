//! CUDA backend (see the GPU issues).
