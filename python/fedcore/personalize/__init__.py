"""Personalization (fine-tuning, FedRep/FedPer, Ditto): after federated training or inside its rounds."""

from fedcore.personalize.evaluate import (
    ClientScore,
    PersonalizationReport,
    mean_client_accuracy,
    personalize_clients,
    score_clients,
    worst_decile,
)
from fedcore.personalize.methods import Personalizer, ditto, fedrep, finetune, make_personalizer
from fedcore.personalize.rounds import DittoRounds, LocalHead, make_ditto_rounds, make_local_head
from fedcore.personalize.spec import PERSONALIZE_SPECS, PersonalizeSpec, parse_personalize
from fedcore.personalize.split import head_mask, head_names

__all__ = [
    "PERSONALIZE_SPECS",
    "ClientScore",
    "DittoRounds",
    "LocalHead",
    "PersonalizationReport",
    "PersonalizeSpec",
    "Personalizer",
    "ditto",
    "fedrep",
    "finetune",
    "head_mask",
    "head_names",
    "make_ditto_rounds",
    "make_local_head",
    "make_personalizer",
    "mean_client_accuracy",
    "parse_personalize",
    "personalize_clients",
    "score_clients",
    "worst_decile",
]
