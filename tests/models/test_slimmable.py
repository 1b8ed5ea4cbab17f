"""Slimmable layers: one set of weights at several widths, switched without a reload."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from splitedge.models.bottleneck import BottleneckConfig, StudentHead
from splitedge.models.slimmable import (
    SlimmableConv2d,
    SwitchableBatchNorm2d,
    WidthAdaptiveInput,
    WidthError,
    channels_at,
    check_widths,
    set_width,
)

torch.set_num_threads(1)
WIDTHS = (0.25, 0.5, 0.75, 1.0)


@pytest.mark.parametrize(
    ("widths", "fragment"),
    [((), "empty"), ((0.0, 1.0), "(0, 1]"), ((1.5,), "(0, 1]"), ((0.5, 0.52), "repeated")],
)
def test_bad_width_sets_are_refused_with_a_reason(widths, fragment):
    with pytest.raises(WidthError, match=fragment.replace("(", r"\(").replace("]", r"\]")):
        check_widths(widths, 12)


def test_channels_at_keeps_at_least_one_channel():
    assert [channels_at(w, 12) for w in WIDTHS] == [3, 6, 9, 12]
    assert channels_at(0.01, 12) == 1


def test_a_narrow_conv_is_the_first_filters_of_the_wide_one():
    torch.manual_seed(0)
    conv = SlimmableConv2d(8, 12, 3, WIDTHS, padding=1, bias=True)
    x = torch.randn(2, 8, 5, 7)
    wide = conv(x)
    for width in WIDTHS:
        conv.switch(width)
        narrow = conv(x)
        assert narrow.shape[1] == channels_at(width, 12)
        torch.testing.assert_close(narrow, wide[:, : narrow.shape[1]])


def test_switching_width_changes_channels_but_no_weights():
    head = StudentHead(BottleneckConfig(channels=12, widths=WIDTHS)).eval()
    before = {k: (v.data_ptr(), v.clone()) for k, v in head.state_dict().items()}
    x = torch.randn(1, 3, 64, 64)
    counts = []
    with torch.no_grad():
        for width in WIDTHS:
            head.set_width(width)
            counts.append(head(x).shape[1])
    assert counts == [3, 6, 9, 12]
    for key, (ptr, value) in before.items():
        tensor = head.state_dict()[key]
        assert tensor.data_ptr() == ptr, f"{key} was reallocated"
        torch.testing.assert_close(tensor, value)


def test_each_width_keeps_its_own_batchnorm_statistics():
    bn = SwitchableBatchNorm2d(12, WIDTHS).train()
    bn.switch(0.5)
    bn(torch.randn(4, 6, 3, 3) + 5.0)
    assert bn.norms[1].running_mean.abs().sum() > 0
    for i in (0, 2, 3):
        assert bn.norms[i].running_mean.abs().sum() == 0  # other widths untouched


def test_decoder_entry_accepts_every_width_as_zero_padding():
    torch.manual_seed(0)
    entry = WidthAdaptiveInput(12, 16, WIDTHS).eval()
    for width in WIDTHS:
        c = channels_at(width, 12)
        code = torch.randn(1, c, 6, 8)
        padded = F.pad(code, (0, 0, 0, 0, 0, 12 - c))
        expected = entry.norms[WIDTHS.index(width)](entry.conv(padded))
        torch.testing.assert_close(entry(code), expected)


def test_decoder_entry_refuses_an_unknown_channel_count():
    entry = WidthAdaptiveInput(12, 16, WIDTHS)
    with pytest.raises(WidthError, match="code has 5 channels"):
        entry(torch.zeros(1, 5, 4, 4))


def test_set_width_refuses_a_width_outside_the_set_and_plain_modules():
    head = StudentHead(BottleneckConfig(channels=12, widths=WIDTHS))
    with pytest.raises(WidthError, match="not in this layer's width set"):
        head.set_width(0.3)
    with pytest.raises(WidthError, match="no slimmable layers"):
        set_width(torch.nn.Conv2d(1, 1, 1), 0.5)
