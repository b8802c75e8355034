"""At large T the converted network reproduces the ANN's logits (soft reset and SNM); hard reset does not."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import snnconvert

T = 1024


def randomize_bn(model: nn.Module) -> nn.Module:
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.8, 1.2)
            m.bias.data.uniform_(-0.1, 0.2)
    return model


def cbr(i: int, o: int) -> list[nn.Module]:
    return [nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU()]


class VGGLike(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(*cbr(3, 8), nn.AvgPool2d(2), *cbr(8, 12), nn.AvgPool2d(2),
                                      *cbr(12, 16), nn.AvgPool2d(2))
        self.classifier = nn.Linear(16, 10)

    def forward(self, x):
        return self.classifier(torch.flatten(self.features(x), 1))


class Block(nn.Module):
    def __init__(self, i: int, o: int, stride: int):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(i, o, 3, stride, 1, bias=False), nn.BatchNorm2d(o)
        self.conv2, self.bn2 = nn.Conv2d(o, o, 3, 1, 1, bias=False), nn.BatchNorm2d(o)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or i != o:  # 1x1 downsample
            self.downsample = nn.Sequential(nn.Conv2d(i, o, 1, stride, bias=False), nn.BatchNorm2d(o))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += identity
        return self.relu(out)


class ResNetLike(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.layer1, self.layer2 = Block(8, 8, 1), Block(8, 12, 2)
        self.branch = nn.Sequential(nn.Conv2d(8, 4, 1), nn.ReLU(), nn.AvgPool2d(2))
        self.head = nn.Conv2d(16, 16, 1)
        self.pool, self.fc = nn.AdaptiveAvgPool2d(1), nn.Linear(16, 10)

    def forward(self, x):
        x = self.layer1(self.stem(x))
        y = torch.cat([self.layer2(x), self.branch(x)], dim=1)
        y = F.relu(self.head(y))
        return self.fc(torch.flatten(self.pool(y), 1))


def setup(make):
    torch.manual_seed(0)
    model = randomize_bn(make()).eval()
    last = model.classifier if hasattr(model, "classifier") else model.fc
    last.weight.data.mul_(10.0)  # logits of order 1, not tiny
    cal, x = torch.randn(64, 3, 8, 8), torch.randn(16, 3, 8, 8)  # same distribution, other samples
    with torch.no_grad():
        ann = model(x)
    assert ann.abs().mean() > 0.3
    return model, cal, x, ann


def rel_errors(model, cal, x, ann, method, **overrides):
    """Relative logit error ||snn - ann|| / ||ann|| after every t = 1..T from ONE run, and the
    SNN's output at T."""
    snn = snnconvert.convert(model, cal, method, **overrides)
    with torch.no_grad():
        out = torch.cat(list(snn.run(x, T)))  # [T, N, classes]
    mean = out.cumsum(0) / torch.arange(1, T + 1).view(-1, 1, 1)
    errors = torch.stack([(m - ann).norm() for m in mean]) / ann.norm()
    with torch.no_grad():
        torch.testing.assert_close(snn(x, 16), mean[15])  # forward() is the same mean
    return errors, mean[-1]


@pytest.mark.parametrize("make", [VGGLike, ResNetLike], ids=["vgg", "resnet"])
def test_soft_reset_and_snm_reproduce_the_ann_and_hard_reset_is_worse(make):
    model, cal, x, ann = setup(make)
    rmp, rmp_out = rel_errors(model, cal, x, ann, "rmp")
    snm, _ = rel_errors(model, cal, x, ann, "snm")
    hard, _ = rel_errors(model, cal, x, ann, "baseline")
    soft_max, _ = rel_errors(model, cal, x, ann, "baseline", neuron="if_soft")  # baseline's thresholds
    assert rmp[-1] < 0.05 and snm[-1] < 0.05 and soft_max[-1] < 0.05
    # the error shrinks with T (soft reset keeps the residue)
    assert rmp[-1] < rmp[T // 8 - 1] and soft_max[-1] < soft_max[T // 8 - 1]
    # hard reset loses the residue: worse than soft reset at the same T, with identical thresholds
    assert hard[-1] > 2 * soft_max[-1]
    assert hard[-1] > rmp[-1]
    # and the class decisions agree with the ANN for the soft-reset SNN
    assert (rmp_out.argmax(1) == ann.argmax(1)).float().mean().item() >= 0.9

