#![doc = include_str!("../README.md")]

pub mod device;

pub use device::{
    configure_determinism, cuda_available, select_device, try_select_device, DeviceError,
    DevicePreference,
};
