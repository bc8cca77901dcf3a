//! Executing telecommands (already authenticated and fresh: the uplink receiver refuses anything
//! else). Every command ends in an event product that names the ground's command id, so the
//! operator sees what ran and what was refused, and why.

use kestrel_dictionary::{EventSource, Parameter};
use kestrel_link::product::{CommandStage, Severity};
use kestrel_link::uplink::Telecommand;

use crate::checkpoint::FrameState;
use crate::pipeline::{Change, Pipeline, RunError};
use crate::products::{self, FrameView};
use crate::upload::Install;

impl Pipeline {
    /// Runs command `id` (the ground's audit id) and reports it in an event; `tagged_at`: the time
    /// it was tagged with, for one of a time-tagged sequence (each reports under the sequence's id).
    pub(crate) fn execute(
        &mut self,
        id: u64,
        tagged_at: Option<i64>,
        command: Telecommand,
        now: i64,
        change: &mut Change,
    ) -> Result<(), RunError> {
        let outcome = self.outcome(id, &command, now, change)?;
        let name = match tagged_at {
            None => format!("command {id}"),
            Some(at) => format!("command {id} (time-tagged for {at})"),
        };
        let (severity, message) = match &outcome {
            Ok(done) => {
                change.state.counters.commands_executed += 1;
                (Severity::Info, format!("{name}: {done}"))
            }
            Err(why) => {
                change.state.counters.commands_refused += 1;
                (Severity::Warning, format!("{name} refused: {why}"))
            }
        };
        change.event(now, severity, EventSource::Command, message);
        // the verification reports: a command received is accepted (and then completed) or
        // refused; one of a time-tagged sequence was accepted with its sequence, and ends
        // completed or failed when its time comes
        let stages = match (outcome, tagged_at) {
            (Ok(detail), None) => vec![CommandStage::Accepted, CommandStage::Completed { detail }],
            (Err(reason), None) => vec![CommandStage::Refused { reason }],
            (Ok(detail), Some(_)) => vec![CommandStage::Completed { detail }],
            (Err(reason), Some(_)) => vec![CommandStage::Failed { reason }],
        };
        for stage in stages {
            change.command_report(now, id, tagged_at, stage);
        }
        Ok(())
    }

    /// What the command did, or why it was refused.
    fn outcome(
        &mut self,
        id: u64,
        command: &Telecommand,
        now: i64,
        change: &mut Change,
    ) -> Result<Result<String, String>, RunError> {
        Ok(match command {
            Telecommand::SetMode { mode } => {
                change.set_mode(now, *mode, "by telecommand");
                Ok(format!("mode set to {mode:?}"))
            }
            // the mission dictionary's check, the one the ground makes before sending
            Telecommand::SetParameter { name, value } => match Parameter::check(name, *value) {
                Err(why) => Err(why.to_string()),
                Ok(_) => {
                    change.state.parameters.insert(name.clone(), *value);
                    Ok(format!("`{name}` set to {value}"))
                }
            },
            Telecommand::Redownlink { product_id } => match self.checkpoint.product(*product_id)? {
                Some(mut product) => {
                    product.sent = None;
                    change.batch.product(product);
                    Ok(format!("product {product_id} queued to be sent again"))
                }
                None => Err(format!("product {product_id} is not on board (acknowledged and pruned, or never made)")),
            },
            Telecommand::InstallModel { transfer, model, length, sha256, signature } => {
                let install = Install { transfer: *transfer, model, length: *length, sha256, signature };
                self.install_model(&install, change)?
            }
            Telecommand::RequestTile { frame_id, x, y, width, height } => {
                self.requested_tile(*frame_id, [*x, *y, *width, *height], change)?
            }
            Telecommand::TimeTagged { commands } => {
                if commands.iter().any(|(_, c)| matches!(c, Telecommand::TimeTagged { .. })) {
                    Err("a time-tagged sequence cannot hold another".to_owned())
                } else {
                    // each runs under the ground's id of the sequence, so its report names it
                    for (at, command) in commands {
                        change.state.time_tagged.push((*at, id, command.clone()));
                    }
                    change.state.time_tagged.sort_by_key(|(at, _, _)| *at);
                    Ok(format!("{} commands stored to run at their times", commands.len()))
                }
            }
        })
    }

    fn requested_tile(
        &mut self,
        frame_id: u64,
        window: [u32; 4],
        change: &mut Change,
    ) -> Result<Result<String, String>, RunError> {
        let Some(record) = self.checkpoint.frame(frame_id)? else {
            return Ok(Err(format!("frame {frame_id} is not on board")));
        };
        if !matches!(record.state, FrameState::Done { .. } | FrameState::Claimed) {
            return Ok(Err(format!("frame {frame_id} was quarantined")));
        }
        let Some(detector) = self.detector.as_ref() else {
            return Ok(Err("no detector loaded to read the frame's bands".to_owned()));
        };
        let path = self.state_dir.join(&record.file);
        let (raster, georef) = match detector.read_frame(&path) {
            Ok(frame) => frame,
            Err(e) => return Ok(Err(format!("frame {frame_id} cannot be read: {e}"))),
        };
        let ranges = detector.scaling(&raster);
        let view = FrameView {
            id: frame_id,
            time_ms: record.time_ms,
            raster: &raster,
            georef: georef.as_ref(),
            ranges: &ranges,
        };
        Ok(match products::requested_tile(&view, window) {
            Some(product) => {
                change.state.counters.products_made += 1;
                change.batch.product(products::queued(&product));
                Ok(format!("tile {window:?} of frame {frame_id} queued as product {}", product.id))
            }
            None => Err(format!("tile {window:?} lies outside frame {frame_id} ({}x{})", raster.width, raster.height)),
        })
    }
}
