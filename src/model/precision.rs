//! bf16 autocast on CUDA, which `tch::autocast` alone does not give.
//!
//! `tch::autocast` switches libtorch's CUDA autocast on, but libtorch's default autocast dtype on CUDA is
//! **float16**, and tch exposes no way to change it. Training in fp16 without a gradient scaler
//! underflows gradients; the reference (`torch.autocast("cuda", dtype=torch.bfloat16)`) uses bf16. So
//! [`autocast_bf16`] sets the CUDA autocast dtype to bf16 for the closure and puts it back afterwards.
//!
//! libtorch's C API (which tch wraps) has no function for this, so we call the C++ function
//! `at::autocast::set_autocast_dtype(c10::DeviceType, c10::ScalarType)` by its mangled name. Both
//! arguments are `enum class : int8_t`, which the x86-64 and AArch64 C++ ABIs pass exactly like C `int8_t`
//! arguments; the symbol is exported by `libtorch_cpu.so` of the pinned torch 2.11.0. The values are
//! fixed by c10 (`DeviceType::CUDA == 1`, `ScalarType::BFloat16 == 15`) and a test reads them back.

use std::os::raw::c_char;

const DEVICE_CUDA: c_char = 1;
const SCALAR_BFLOAT16: c_char = 15;
const SCALAR_HALF: c_char = 5;

extern "C" {
    #[link_name = "_ZN2at8autocast20set_autocast_enabledEN3c1010DeviceTypeEb"]
    fn at_set_autocast_enabled(device: c_char, enabled: bool);
    #[link_name = "_ZN2at8autocast19is_autocast_enabledEN3c1010DeviceTypeE"]
    fn at_is_autocast_enabled(device: c_char) -> bool;
    #[link_name = "_ZN2at8autocast18set_autocast_dtypeEN3c1010DeviceTypeENS1_10ScalarTypeE"]
    fn at_set_autocast_dtype(device: c_char, dtype: c_char);
    #[link_name = "_ZN2at8autocast18get_autocast_dtypeEN3c1010DeviceTypeE"]
    fn at_get_autocast_dtype(device: c_char) -> c_char;
}

/// Runs `f` under CUDA autocast in bf16 when `enabled` and a GPU is present; otherwise runs it as is
/// (on the CPU everything stays f32). Put the forward pass and the loss inside, `backward()` outside, as
/// with `torch.autocast`.
pub fn autocast_bf16<T>(enabled: bool, f: impl FnOnce() -> T) -> T {
    if !enabled || !tch::Cuda::is_available() {
        return f();
    }
    // The autocast dtype is thread-local in libtorch, so setting and restoring it here cannot disturb
    // another thread.
    // SAFETY: a plain setter of a thread-local with two by-value int8 enums; see the module doc.
    //
    // `tch::autocast` is not used: it goes through `at::autocast::set_enabled`, which libtorch 2.11
    // deprecates with a warning printed on every call (several per training step). The per-device
    // setters below are the current API; nesting and the cast cache are kept as tch keeps them.
    // SAFETY: plain setters and getters of thread-local state with by-value int8 enums and a bool; see the
    // module doc.
    let previous_dtype = unsafe { at_get_autocast_dtype(DEVICE_CUDA) };
    let previous_enabled = unsafe { at_is_autocast_enabled(DEVICE_CUDA) };
    unsafe {
        at_set_autocast_dtype(DEVICE_CUDA, SCALAR_BFLOAT16);
        at_set_autocast_enabled(DEVICE_CUDA, true);
        torch_sys::at_autocast_increment_nesting();
    }
    let out = f();
    unsafe {
        // The cache of casted weights lives as long as the outermost autocast region, as in PyTorch.
        if torch_sys::at_autocast_decrement_nesting() == 0 {
            torch_sys::at_autocast_clear_cache();
        }
        at_set_autocast_enabled(DEVICE_CUDA, previous_enabled);
        at_set_autocast_dtype(DEVICE_CUDA, previous_dtype);
    }
    out
}

/// The dtype CUDA autocast casts matrix-multiply inputs to on this thread, when it is on: what
/// [`autocast_bf16`] set up (bf16), or libtorch's own setting if someone else enabled it.
pub fn cuda_autocast_kind() -> Option<tch::Kind> {
    // SAFETY: plain getters of thread-local state; see the module doc.
    let (enabled, dtype) = unsafe {
        (
            at_is_autocast_enabled(DEVICE_CUDA),
            at_get_autocast_dtype(DEVICE_CUDA),
        )
    };
    if !enabled {
        return None;
    }
    match dtype {
        SCALAR_BFLOAT16 => Some(tch::Kind::BFloat16),
        SCALAR_HALF => Some(tch::Kind::Half),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuda_autocast_dtype_can_be_set_to_bf16_and_restored() {
        // Works without a GPU: the setting is plain thread-local state in libtorch_cpu.
        unsafe {
            let before = at_get_autocast_dtype(DEVICE_CUDA);
            // c10::ScalarType::Half == 5: libtorch's CUDA autocast default, the reason this module exists.
            assert_eq!(before, 5, "fp16 is the default CUDA autocast dtype");
            at_set_autocast_dtype(DEVICE_CUDA, SCALAR_BFLOAT16);
            assert_eq!(at_get_autocast_dtype(DEVICE_CUDA), SCALAR_BFLOAT16);
            at_set_autocast_dtype(DEVICE_CUDA, before);
            assert_eq!(at_get_autocast_dtype(DEVICE_CUDA), before);
            assert!(!at_is_autocast_enabled(DEVICE_CUDA));
            assert_eq!(cuda_autocast_kind(), None);
            at_set_autocast_enabled(DEVICE_CUDA, true);
            assert!(at_is_autocast_enabled(DEVICE_CUDA));
            assert_eq!(cuda_autocast_kind(), Some(tch::Kind::Half));
            at_set_autocast_dtype(DEVICE_CUDA, SCALAR_BFLOAT16);
            assert_eq!(cuda_autocast_kind(), Some(tch::Kind::BFloat16));
            at_set_autocast_dtype(DEVICE_CUDA, before);
            at_set_autocast_enabled(DEVICE_CUDA, false);
            assert!(!at_is_autocast_enabled(DEVICE_CUDA));
        }
    }
}
