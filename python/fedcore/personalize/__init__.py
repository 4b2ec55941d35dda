"""Personalization after federated training (fine-tuning, FedRep/FedPer, Ditto), scored per client."""

from fedcore.personalize.evaluate import ClientScore, PersonalizationReport, personalize_clients, worst_decile
from fedcore.personalize.methods import Personalizer, ditto, fedrep, finetune, make_personalizer
from fedcore.personalize.spec import PERSONALIZE_SPECS, PersonalizeSpec, parse_personalize
from fedcore.personalize.split import head_mask, head_names

__all__ = [
    "PERSONALIZE_SPECS",
    "ClientScore",
    "PersonalizationReport",
    "PersonalizeSpec",
    "Personalizer",
    "ditto",
    "fedrep",
    "finetune",
    "head_mask",
    "head_names",
    "make_personalizer",
    "parse_personalize",
    "personalize_clients",
    "worst_decile",
]
