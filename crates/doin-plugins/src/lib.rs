#![doc = include_str!("../README.md")]

#[cfg(feature = "torch")]
pub mod device;
pub mod external;
pub mod quadratic;
#[cfg(feature = "torch")]
pub mod ts_forecast;

#[cfg(feature = "torch")]
pub use device::{
    configure_determinism, cuda_available, select_device, try_select_device, DeviceError,
    DevicePreference,
};

/// A registry of the domains built into this crate, for the node binary to extend with any
/// plugin crate it links: `quadratic` (also under its original name `simple_quadratic`) and
/// `external` (a domain implemented by another program over JSON lines, see [`external`]),
/// and with the `torch` feature `ts_forecast` (also as `ts-forecast`, see [`ts_forecast`]).
pub fn builtin_registry() -> doin_core::plugin::PluginRegistry {
    let mut registry = doin_core::plugin::PluginRegistry::new();
    quadratic::register(&mut registry)
        .expect("built-in plugin names are valid and registered once");
    external::register(&mut registry).expect("built-in plugin names are valid and registered once");
    #[cfg(feature = "torch")]
    ts_forecast::register(&mut registry)
        .expect("built-in plugin names are valid and registered once");
    registry
}
