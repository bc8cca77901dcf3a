//! The plant: orbit, thermal network and power stepped together. The mission planner runs it over
//! whole orbits; the flight scheduler and the tests run it as the truth they act against.

use serde::Serialize;

use crate::config::LoadedThermalMission;
use crate::network::{EnergyFlow, Exposure, Network, ZERO_CELSIUS_K};
use crate::orbit::{Orbit, OrbitError, dot, norm};
use crate::power::{PowerModel, PowerStep};
use crate::sun;

/// The state of the spacecraft at one instant.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sample {
    pub unix: f64,
    pub temperatures_c: Vec<f64>,
    pub soc: f64,
    pub illumination: f64,
    pub power: PowerStep,
}

/// Which thermal node each load heats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadNodes {
    pub bus: usize,
    pub payload: usize,
    pub battery: usize,
}

/// The whole spacecraft model.
#[derive(Debug, Clone)]
pub struct Plant {
    pub orbit: Orbit,
    pub network: Network,
    pub power: PowerModel,
    bus_node: usize,
    payload_node: usize,
    battery_node: usize,
    pub temperatures_k: Vec<f64>,
    pub soc: f64,
    pub energy: EnergyFlow,
}

impl Plant {
    pub fn new(mission: &LoadedThermalMission) -> Self {
        let thermal = &mission.config.thermal;
        let network = Network::from_config(thermal);
        let index = |name: &str| network.index(name).unwrap_or(0);
        Self {
            orbit: mission.orbit.clone(),
            power: PowerModel::from_config(&thermal.power, network.solar_flux_w_m2),
            bus_node: index(thermal.power.bus_node.get_ref()),
            payload_node: index(thermal.power.payload_node.get_ref()),
            battery_node: index(thermal.power.battery_node.get_ref()),
            temperatures_k: thermal.nodes.iter().map(|n| n.initial_temperature_c + ZERO_CELSIUS_K).collect(),
            soc: *thermal.power.battery_initial_soc.get_ref(),
            energy: EnergyFlow::default(),
            network,
        }
    }

    /// Sunlight and albedo on the spacecraft at `t`.
    pub fn exposure(&self, t: f64) -> Result<Exposure, OrbitError> {
        let (r, _) = self.orbit.teme(t)?;
        let sun = sun::position(t);
        let albedo_factor = (dot(r, sun) / (norm(r) * norm(sun))).max(0.0);
        Ok(Exposure { illumination: sun::illumination(r, sun), albedo_factor })
    }

    /// Advances the plant by `dt` seconds from `t` with the GPU drawing `gpu_w`.
    pub fn step(&mut self, t: f64, dt: f64, gpu_w: f64) -> Result<Sample, OrbitError> {
        let exposure = self.exposure(t)?;
        Ok(self.step_exposed(t, dt, exposure, gpu_w))
    }

    /// [`Plant::step`] with the exposure already known: forecasts that try several loads along
    /// the same stretch of orbit compute the orbit once.
    pub fn step_exposed(&mut self, t: f64, dt: f64, exposure: Exposure, gpu_w: f64) -> Sample {
        let load_w = self.power.bus_load_w + gpu_w;
        let power = self.power.step(&mut self.soc, dt, exposure.illumination, load_w);
        // what the loads could not draw is not dissipated either
        let served = (load_w - power.unmet_w) / load_w.max(f64::MIN_POSITIVE);
        let mut dissipation = vec![0.0; self.network.nodes.len()];
        dissipation[self.bus_node] += self.power.bus_load_w * served;
        dissipation[self.payload_node] += gpu_w * served;
        dissipation[self.battery_node] += power.battery_heat_w;
        self.energy += self.network.step(&mut self.temperatures_k, dt, exposure, &dissipation);
        Sample {
            unix: t + dt,
            temperatures_c: self.temperatures_k.iter().map(|k| k - ZERO_CELSIUS_K).collect(),
            soc: self.soc,
            illumination: exposure.illumination,
            power,
        }
    }

    /// Indices of the nodes the bus, the GPU and the battery heat.
    pub fn load_nodes(&self) -> LoadNodes {
        LoadNodes { bus: self.bus_node, payload: self.payload_node, battery: self.battery_node }
    }
}
