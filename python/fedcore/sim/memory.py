"""What each simulated client keeps between the rounds it takes part in, as it would on its own device."""

from __future__ import annotations

from dataclasses import dataclass, field

from fedcore.compression import Payload, Vector
from fedcore.downlink import reconstruct
from fedcore.powersgd import PowerSGD
from fedcore.sim.workers import WorkerResult


@dataclass
class ClientMemory:
    """Last loss (for selection), error-feedback residual, SCAFFOLD control, downlink model, PowerSGD state.

    `models` is each client's own copy of the model it rebuilt from downlink messages: one vector per
    client that has received one, kept apart from the server's record so the two can be compared.
    `heads` (a local head's values) and `personal` (Ditto's personal model) never leave the client.
    """

    losses: dict[int, float] = field(default_factory=dict)
    residuals: dict[int, Vector] = field(default_factory=dict)
    controls: dict[int, Vector] = field(default_factory=dict)
    models: dict[int, Vector] = field(default_factory=dict)
    compressors: dict[int, PowerSGD] = field(default_factory=dict)
    heads: dict[int, Vector] = field(default_factory=dict)
    personal: dict[int, Vector] = field(default_factory=dict)

    def remember(self, results: list[WorkerResult]) -> None:
        for result in results:
            for report in result.reports:
                if report.diverged:  # it sent nothing; what it held before stays as it was
                    continue
                self.losses[report.client_id] = report.loss
                if report.residual is not None:
                    self.residuals[report.client_id] = report.residual
                else:  # nothing left to carry: no error feedback, or a lossless upload delivered it all
                    self.residuals.pop(report.client_id, None)
                if report.control is not None:
                    self.controls[report.client_id] = report.control
                if report.compressor is not None:
                    self.compressors[report.client_id] = report.compressor
                if report.head is not None:
                    self.heads[report.client_id] = report.head
                if report.personal is not None:
                    self.personal[report.client_id] = report.personal

    def receive(self, client_id: int, payload: Payload, initial: Vector) -> Vector:
        """The client applies a downlink message to the model it holds (the initial one if none yet)."""
        model = reconstruct(self.models.get(client_id, initial), payload)
        self.models[client_id] = model
        return model
