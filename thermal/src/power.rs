//! Power: solar arrays, a battery with charge and discharge limits, and the loads (bus, GPU idle
//! or running). Every watt the loads draw ends as heat in a node of the thermal network.

use serde::Serialize;

use crate::config::PowerConfig;

#[derive(Debug, Clone, PartialEq)]
pub struct PowerModel {
    array_w_full_sun: f64,
    capacity_j: f64,
    pub max_charge_w: f64,
    pub max_discharge_w: f64,
    pub charge_efficiency: f64,
    pub bus_load_w: f64,
    pub gpu_idle_w: f64,
    pub gpu_active_w: f64,
}

/// What the power system did during one step.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PowerStep {
    pub generated_w: f64,
    pub load_w: f64,
    /// Positive while charging.
    pub battery_w: f64,
    /// Array power neither used nor stored (left on the array).
    pub shunted_w: f64,
    /// Load the battery could not carry (a brown-out): the scheduler must never let this happen.
    pub unmet_w: f64,
    /// Charging loss, dissipated in the battery.
    pub battery_heat_w: f64,
}

impl PowerModel {
    pub fn from_config(p: &PowerConfig, solar_flux_w_m2: f64) -> Self {
        Self {
            array_w_full_sun: solar_flux_w_m2
                * p.solar_array_area_m2.get_ref()
                * p.solar_cell_efficiency.get_ref()
                * p.solar_incidence_deg.get_ref().to_radians().cos(),
            capacity_j: p.battery_capacity_wh.get_ref() * 3600.0,
            max_charge_w: *p.battery_max_charge_w.get_ref(),
            max_discharge_w: *p.battery_max_discharge_w.get_ref(),
            charge_efficiency: *p.battery_charge_efficiency.get_ref(),
            bus_load_w: *p.bus_load_w.get_ref(),
            gpu_idle_w: *p.gpu_idle_w.get_ref(),
            gpu_active_w: *p.gpu_active_w.get_ref(),
        }
    }

    /// Array output in full sunlight, W.
    pub fn array_w_full_sun(&self) -> f64 {
        self.array_w_full_sun
    }

    pub fn capacity_wh(&self) -> f64 {
        self.capacity_j / 3600.0
    }

    /// Advances the state of charge `soc` (0 to 1) by `dt` seconds with the load `load_w`.
    pub fn step(&self, soc: &mut f64, dt: f64, illumination: f64, load_w: f64) -> PowerStep {
        let generated_w = self.array_w_full_sun * illumination;
        let surplus = generated_w - load_w;
        let mut step =
            PowerStep { generated_w, load_w, battery_w: 0.0, shunted_w: 0.0, unmet_w: 0.0, battery_heat_w: 0.0 };
        if surplus >= 0.0 {
            let room_w = (1.0 - *soc) * self.capacity_j / dt / self.charge_efficiency;
            let charge = surplus.min(self.max_charge_w).min(room_w);
            *soc += charge * self.charge_efficiency * dt / self.capacity_j;
            step.battery_w = charge;
            step.battery_heat_w = charge * (1.0 - self.charge_efficiency);
            step.shunted_w = surplus - charge;
        } else {
            let available_w = (*soc * self.capacity_j / dt).min(self.max_discharge_w);
            let discharge = (-surplus).min(available_w);
            *soc -= discharge * dt / self.capacity_j;
            step.battery_w = -discharge;
            step.unmet_w = -surplus - discharge;
        }
        *soc = soc.clamp(0.0, 1.0);
        step
    }
}
