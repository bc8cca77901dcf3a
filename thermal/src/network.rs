//! A lumped thermal network: nodes with heat capacities, conductances between them, outside
//! surfaces that absorb sunlight, albedo and Earth infrared and radiate to space (εσA(T⁴−Tₛ⁴)).
//! Integrated with fourth-order Runge-Kutta; the energy that enters, leaves and stays is
//! accounted with the same weights, so the balance can be checked.

use crate::config::ThermalConfig;

/// Stefan-Boltzmann constant, W/(m² K⁴).
pub const SIGMA: f64 = 5.670_374_419e-8;
pub const ZERO_CELSIUS_K: f64 = 273.15;

#[derive(Debug, Clone, PartialEq)]
pub struct SurfaceModel {
    pub area_m2: f64,
    pub emissivity: f64,
    pub absorptivity: f64,
    pub sun_view: f64,
    pub earth_view: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NodeModel {
    pub name: String,
    pub heat_capacity_j_k: f64,
    pub surface: Option<SurfaceModel>,
}

/// What the orbit does to the outside at one instant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Exposure {
    /// Fraction of the solar disc visible (0 in umbra).
    pub illumination: f64,
    /// Cosine of the Sun's zenith angle at the sub-satellite point, 0 on the night side: scales albedo.
    pub albedo_factor: f64,
}

/// Energy that crossed the network's boundary during a step, joules.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct EnergyFlow {
    /// Sunlight, albedo and Earth infrared absorbed.
    pub absorbed_j: f64,
    /// Electrical and chemical dissipation inside the nodes.
    pub dissipated_j: f64,
    /// Radiated to space.
    pub radiated_j: f64,
}

impl std::ops::AddAssign for EnergyFlow {
    fn add_assign(&mut self, other: Self) {
        self.absorbed_j += other.absorbed_j;
        self.dissipated_j += other.dissipated_j;
        self.radiated_j += other.radiated_j;
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Network {
    pub nodes: Vec<NodeModel>,
    /// (node a, node b, conductance W/K)
    pub links: Vec<(usize, usize, f64)>,
    pub solar_flux_w_m2: f64,
    pub albedo: f64,
    pub earth_ir_w_m2: f64,
    pub space_temperature_k: f64,
}

impl Network {
    /// The network a checked mission file describes.
    pub fn from_config(config: &ThermalConfig) -> Self {
        let nodes: Vec<NodeModel> = config
            .nodes
            .iter()
            .map(|n| NodeModel {
                name: n.name.clone(),
                heat_capacity_j_k: *n.heat_capacity_j_k.get_ref(),
                surface: n.surface.as_ref().map(|s| SurfaceModel {
                    area_m2: *s.area_m2.get_ref(),
                    emissivity: *s.emissivity.get_ref(),
                    absorptivity: *s.absorptivity.get_ref(),
                    sun_view: *s.sun_view.get_ref(),
                    earth_view: *s.earth_view.get_ref(),
                }),
            })
            .collect();
        let index = |name: &str| nodes.iter().position(|n| n.name == name).unwrap_or(0);
        let links = config
            .conductances
            .iter()
            .map(|c| (index(&c.between.get_ref()[0]), index(&c.between.get_ref()[1]), *c.w_k.get_ref()))
            .collect();
        let env = &config.environment;
        Self {
            nodes,
            links,
            solar_flux_w_m2: *env.solar_flux_w_m2.get_ref(),
            albedo: *env.albedo.get_ref(),
            earth_ir_w_m2: *env.earth_ir_w_m2.get_ref(),
            space_temperature_k: *env.space_temperature_k.get_ref(),
        }
    }

    pub fn index(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }

    /// Sunlight, albedo and Earth infrared absorbed by node `i`'s outside surface, W.
    pub fn absorbed_w(&self, i: usize, exposure: Exposure) -> f64 {
        let Some(s) = &self.nodes[i].surface else { return 0.0 };
        let solar = s.absorptivity * self.solar_flux_w_m2 * s.area_m2 * s.sun_view * exposure.illumination;
        let albedo =
            s.absorptivity * self.solar_flux_w_m2 * self.albedo * s.area_m2 * s.earth_view * exposure.albedo_factor;
        let infrared = s.emissivity * self.earth_ir_w_m2 * s.area_m2 * s.earth_view;
        solar + albedo + infrared
    }

    /// Net heat node `i`'s outside surface radiates to space at `t_k` kelvin, W.
    pub fn radiated_w(&self, i: usize, t_k: f64) -> f64 {
        self.nodes[i]
            .surface
            .as_ref()
            .map_or(0.0, |s| s.emissivity * SIGMA * s.area_m2 * (t_k.powi(4) - self.space_temperature_k.powi(4)))
    }

    /// d(radiated_w)/dT at `t_k`, W/K: what a linearised model of the network needs.
    pub fn radiated_slope_w_k(&self, i: usize, t_k: f64) -> f64 {
        self.nodes[i].surface.as_ref().map_or(0.0, |s| 4.0 * s.emissivity * SIGMA * s.area_m2 * t_k.powi(3))
    }

    /// Net heat into each node (W) at temperatures `t_k`, and the boundary flows (W).
    fn rates(&self, t_k: &[f64], exposure: Exposure, dissipation_w: &[f64], net: &mut [f64]) -> EnergyFlow {
        let mut flow = EnergyFlow::default();
        for (i, node) in self.nodes.iter().enumerate() {
            let mut q = dissipation_w[i];
            flow.dissipated_j += dissipation_w[i];
            if node.surface.is_some() {
                let absorbed = self.absorbed_w(i, exposure);
                let radiated = self.radiated_w(i, t_k[i]);
                q += absorbed - radiated;
                flow.absorbed_j += absorbed;
                flow.radiated_j += radiated;
            }
            net[i] = q;
        }
        for &(a, b, g) in &self.links {
            let q = g * (t_k[a] - t_k[b]);
            net[a] -= q;
            net[b] += q;
        }
        flow
    }

    /// Advances temperatures (kelvin) by `dt` seconds with constant exposure and dissipation;
    /// returns the energy that crossed the boundary.
    pub fn step(&self, t_k: &mut [f64], dt: f64, exposure: Exposure, dissipation_w: &[f64]) -> EnergyFlow {
        let n = t_k.len();
        let mut k = [vec![0.0; n], vec![0.0; n], vec![0.0; n], vec![0.0; n]];
        let mut stage = t_k.to_vec();
        let mut energy = EnergyFlow::default();
        for s in 0..4 {
            if s > 0 {
                let h = if s == 3 { dt } else { dt / 2.0 };
                for i in 0..n {
                    stage[i] = t_k[i] + h * k[s - 1][i] / self.nodes[i].heat_capacity_j_k;
                }
            }
            let flow = self.rates(&stage, exposure, dissipation_w, &mut k[s]);
            let weight = if s == 0 || s == 3 { dt / 6.0 } else { dt / 3.0 };
            energy.absorbed_j += weight * flow.absorbed_j;
            energy.dissipated_j += weight * flow.dissipated_j;
            energy.radiated_j += weight * flow.radiated_j;
        }
        for i in 0..n {
            let q = (k[0][i] + 2.0 * k[1][i] + 2.0 * k[2][i] + k[3][i]) / 6.0;
            t_k[i] += dt * q / self.nodes[i].heat_capacity_j_k;
        }
        energy
    }

    /// Heat stored in the nodes relative to 0 K, joules.
    pub fn stored_j(&self, t_k: &[f64]) -> f64 {
        self.nodes.iter().zip(t_k).map(|(n, t)| n.heat_capacity_j_k * t).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn radiator(area: f64, emissivity: f64, capacity: f64) -> Network {
        Network {
            nodes: vec![NodeModel {
                name: "radiator".into(),
                heat_capacity_j_k: capacity,
                surface: Some(SurfaceModel {
                    area_m2: area,
                    emissivity,
                    absorptivity: 0.2,
                    sun_view: 0.0,
                    earth_view: 0.0,
                }),
            }],
            links: vec![],
            solar_flux_w_m2: 1361.0,
            albedo: 0.3,
            earth_ir_w_m2: 237.0,
            space_temperature_k: 0.0,
        }
    }

    const DARK: Exposure = Exposure { illumination: 0.0, albedo_factor: 0.0 };

    #[test]
    fn a_radiator_settles_where_its_emission_equals_its_load() {
        let (q, e, a) = (150.0, 0.85, 0.4);
        let net = radiator(a, e, 2000.0);
        let mut t = [250.0];
        for _ in 0..20_000 {
            net.step(&mut t, 10.0, DARK, &[q]);
        }
        let expected = (q / (e * SIGMA * a)).powf(0.25);
        assert!((t[0] - expected).abs() < 0.1, "{} K, analytic {expected} K", t[0]);
    }

    #[test]
    fn a_node_relaxes_to_its_boundary_as_the_exponential_says() {
        // a node conducting to a boundary of (practically) infinite capacity
        let net = Network {
            nodes: vec![
                NodeModel { name: "node".into(), heat_capacity_j_k: 900.0, surface: None },
                NodeModel { name: "boundary".into(), heat_capacity_j_k: 1e15, surface: None },
            ],
            links: vec![(0, 1, 3.0)],
            ..radiator(1.0, 1.0, 1.0)
        };
        let mut t = [350.0, 280.0];
        let tau = 900.0 / 3.0;
        for step in 1..=200 {
            net.step(&mut t, 5.0, DARK, &[0.0, 0.0]);
            let analytic = 280.0 + 70.0 * (-(step as f64 * 5.0) / tau).exp();
            assert!((t[0] - analytic).abs() < 1e-6, "step {step}: {} vs {analytic}", t[0]);
        }
    }

    #[test]
    fn energy_is_conserved_through_a_step() {
        let net = Network {
            nodes: vec![
                NodeModel {
                    name: "a".into(),
                    heat_capacity_j_k: 500.0,
                    surface: radiator(0.3, 0.8, 1.0).nodes[0].surface.clone(),
                },
                NodeModel { name: "b".into(), heat_capacity_j_k: 800.0, surface: None },
            ],
            links: vec![(0, 1, 1.5)],
            ..radiator(1.0, 1.0, 1.0)
        };
        let mut t = [300.0, 310.0];
        let before = net.stored_j(&t);
        let mut flow = EnergyFlow::default();
        for _ in 0..100 {
            flow += net.step(&mut t, 10.0, Exposure { illumination: 0.7, albedo_factor: 0.4 }, &[20.0, 5.0]);
        }
        let stored = net.stored_j(&t) - before;
        let balance = flow.absorbed_j + flow.dissipated_j - flow.radiated_j;
        assert!((stored - balance).abs() < 1e-6 * flow.radiated_j, "{stored} vs {balance}");
    }
}
