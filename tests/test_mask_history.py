"""mask_history: True removes each user's input items from full ranking, for any sequential model."""
import pytest
import torch


@pytest.mark.parametrize("model", ["LRURec", "SASRec"])
def test_history_items_are_masked(model, tiny_data):
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import get_model, get_trainer

    cfg = {**tiny_data, "mask_history": True, "train_neg_sample_args": None}
    config = Config(model=model, dataset="tiny", config_dict=cfg)
    train, valid, test = data_preparation(config, create_dataset(config))
    net = get_model(model)(config, train.dataset)
    trainer = get_trainer(config["MODEL_TYPE"], model)(config, net)
    trainer.tot_item_num = valid.dataset.item_num
    batch = next(iter(valid))
    interaction, scores, _, _ = trainer._full_sort_batch_eval(batch)
    seq = interaction["item_id_list"]
    assert torch.isinf(scores.gather(1, seq)).all()
    outside = torch.ones_like(scores, dtype=torch.bool).scatter_(1, seq, False)
    outside[:, 0] = False
    assert torch.isfinite(scores[outside]).all()

    config["mask_history"] = False
    _, scores, _, _ = trainer._full_sort_batch_eval(batch)
    history = torch.zeros_like(scores, dtype=torch.bool).scatter_(1, seq, True)
    history[:, 0] = False
    assert torch.isfinite(scores[history]).all()
