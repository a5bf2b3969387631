#!/usr/bin/env python3
"""A DOIN domain in Python, standard library only: linear regression.

The node runs this file as a child process (plugin "external") and talks to it in JSON lines
over stdin/stdout, protocol version 1 (docs/plugins.md). Copy it to start your own domain:
replace the four functions under "the domain" and keep the protocol loop.

The domain: find weights w and bias b so that y = w.x + b fits data drawn from one hidden
linear model y = w*.x + b* + noise. Everything every node must agree on (w*, b*, the noise
level) comes from the domain config, so all nodes evaluate the same function.

  parameters   n_features + 1 little-endian float64: w_0 .. w_{n-1}, b
  dataset      n_samples rows of n_features + 1 little-endian float64: x_0 .. x_{n-1}, y
  score        -MSE of the parameters on the dataset (higher is better, 0 is perfect)
  infer        {"features": [n numbers]} -> {"prediction": w.x + b}
  optimizer    full-batch gradient descent on its own training set (from its seed)
  train        gradient descent with the requested learning_rate and steps

Config keys (synthetic_data_config, falling back to optimization_config):
  n_features (4), n_samples (256), noise_std (0.1), target_seed (derived from the domain id),
  train_samples (256); optimizer: learning_rate (0.3), steps_per_round (10).

Why 256 evaluation samples and 10 steps a round: an evaluator's -MSE on its own sample
differs from the optimizer's claim by sampling noise (about sqrt(2/n) of the excess error),
and the chain tolerates only 0.5 + 5 %; early, far-from-converged claims need the larger n.

Determinism: synthetic data must be bit-identical on every machine, so the random numbers use
only integer arithmetic and IEEE-754 + - * (splitmix64 uniforms, Irwin-Hall normals): no
random.gauss, math.log or math.cos, whose last bit depends on the platform's libm.

Logs go to stderr; stdout carries nothing but responses.
"""

import base64
import hashlib
import json
import struct
import sys
import traceback

PROTOCOL = 1
VERSION = 1
MAX_LINE_BYTES = 96 << 20
MASK = (1 << 64) - 1

TAG_TARGET = 0x7461726765740001
TAG_DATA = 0x6461746100000002
TAG_TRAIN = 0x747261696E000003


class DomainError(Exception):
    """An error reply: kind is invalid_params, invalid_data, invalid_input, invalid_config,
    unsupported or failed."""

    def __init__(self, kind, message, field=None):
        super().__init__(message)
        self.kind = kind
        self.field = field


# --- random numbers (identical on every machine) ---


def _mix(z):
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


class SplitMix64:
    def __init__(self, tag, words):
        state = _mix(tag)
        for w in words:
            state = _mix(state ^ _mix((w + tag) & MASK))
        self.state = state

    def next_u64(self):
        self.state = (self.state + 0x9E3779B97F4A7C15) & MASK
        return _mix(self.state)

    def unit(self):
        """Uniform in [0, 1) with 53 random bits (exact)."""
        return (self.next_u64() >> 11) * (1.0 / (1 << 53))

    def uniform(self, low, high):
        return low + (high - low) * self.unit()

    def normal(self):
        """Approximately standard normal: the Irwin-Hall sum of 12 uniforms minus 6."""
        total = 0.0
        for _ in range(12):
            total += self.unit()
        return total - 6.0


def seed_words(seed_hex):
    try:
        raw = bytes.fromhex(seed_hex)
    except (TypeError, ValueError):
        raise DomainError("invalid_input", "seed must be 64 hex digits")
    if len(raw) != 32:
        raise DomainError("invalid_input", "seed must be 32 bytes")
    return list(struct.unpack("<4Q", raw))


# --- the domain ---


class Domain:
    def __init__(self, domain_id, config):
        def number(key, default, low, high, integer=False):
            value = config.get(key, default)
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            if ok and integer:
                ok = float(value).is_integer()
            if not ok or not (low <= value <= high):
                raise DomainError("invalid_config", "%s must be a number in [%s, %s]" % (key, low, high), key)
            return int(value) if integer else float(value)

        self.n = number("n_features", 4, 1, 1000, integer=True)
        self.n_samples = number("n_samples", 256, 1, 100000, integer=True)
        self.train_samples = number("train_samples", 256, 1, 100000, integer=True)
        self.noise_std = number("noise_std", 0.1, 0.0, 100.0)
        if "target_seed" in config:
            target_seed = number("target_seed", 0, 0, MASK, integer=True)
        else:
            digest = hashlib.sha256(b"doin-linreg-target:" + domain_id.encode()).digest()
            target_seed = struct.unpack("<Q", digest[:8])[0]
        rng = SplitMix64(TAG_TARGET, [target_seed])
        self.w_true = [rng.uniform(-5.0, 5.0) for _ in range(self.n)]
        self.b_true = rng.uniform(-2.0, 2.0)

    def describe(self):
        # Expected -MSE of the zero model: E[(w*.x + b*)^2] + noise^2 with x ~ U(-1, 1)^n.
        signal = sum(w * w for w in self.w_true) / 3.0 + self.b_true * self.b_true
        return {
            "protocol": PROTOCOL,
            "name": "linreg",
            "description": "linear regression on %d features (Python example domain)" % self.n,
            "performance_metric": "neg_mse",
            "higher_is_better": True,
            "version": VERSION,
            "baseline_performance": -(signal + self.noise_std * self.noise_std),
            "capabilities": ["infer", "optimize", "train"],
            "search_space": {"learning_rate": [0.001, 1.0], "steps": [1, 500]},
            "n_features": self.n,
        }

    # encodings

    def decode_params(self, b64):
        raw = decode_b64(b64, "invalid_params")
        if len(raw) != 8 * (self.n + 1):
            raise DomainError("invalid_params", "expected %d bytes (%d float64), got %d"
                              % (8 * (self.n + 1), self.n + 1, len(raw)))
        values = list(struct.unpack("<%dd" % (self.n + 1), raw))
        if any(v != v or v in (float("inf"), float("-inf")) or abs(v) > 1e6 for v in values):
            raise DomainError("invalid_params", "parameters must be finite, |v| <= 1e6")
        return values[:-1], values[-1]

    def encode_params(self, w, b):
        return encode_b64(struct.pack("<%dd" % (self.n + 1), *(list(w) + [b])))

    def decode_dataset(self, b64):
        raw = decode_b64(b64, "invalid_data")
        row = self.n + 1
        if len(raw) == 0 or len(raw) % (8 * row):
            raise DomainError("invalid_data", "dataset must be rows of %d float64" % row)
        flat = struct.unpack("<%dd" % (len(raw) // 8), raw)
        return [(list(flat[i:i + self.n]), flat[i + self.n]) for i in range(0, len(flat), row)]

    # data and score

    def samples(self, rng, count):
        rows = []
        for _ in range(count):
            x = [rng.uniform(-1.0, 1.0) for _ in range(self.n)]
            y = self.b_true + self.noise_std * rng.normal()
            for wi, xi in zip(self.w_true, x):
                y += wi * xi
            rows.append((x, y))
        return rows

    def synthesize(self, seed_hex):
        rows = self.samples(SplitMix64(TAG_DATA, seed_words(seed_hex)), self.n_samples)
        flat = []
        for x, y in rows:
            flat.extend(x)
            flat.append(y)
        return encode_b64(struct.pack("<%dd" % len(flat), *flat))

    @staticmethod
    def mse(w, b, rows):
        total = 0.0
        for x, y in rows:
            err = b - y
            for wi, xi in zip(w, x):
                err += wi * xi
            total += err * err
        return total / len(rows)

    def score(self, w, b, rows):
        return -self.mse(w, b, rows)

    def gradient_step(self, w, b, rows, lr):
        gw = [0.0] * self.n
        gb = 0.0
        for x, y in rows:
            err = b - y
            for wi, xi in zip(w, x):
                err += wi * xi
            for i, xi in enumerate(x):
                gw[i] += err * xi
            gb += err
        scale = 2.0 * lr / len(rows)
        return [wi - scale * g for wi, g in zip(w, gw)], b - scale * gb


class Optimizer:
    """One island: gradient descent on a private training set drawn from its seed."""

    def __init__(self, domain, config, seed):
        self.domain = domain
        self.lr = float(config.get("learning_rate", 0.3))
        self.steps = int(config.get("steps_per_round", 10))
        if not (0.0 < self.lr <= 1.0) or not (1 <= self.steps <= 1000):
            raise DomainError("invalid_config", "learning_rate must be in (0, 1], steps_per_round in [1, 1000]")
        self.rows = domain.samples(SplitMix64(TAG_TRAIN, [seed & MASK]), domain.train_samples)
        self.w = [0.0] * domain.n
        self.b = 0.0
        self.performance = domain.score(self.w, self.b, self.rows)

    def adopt_if_better(self, w, b):
        performance = self.domain.score(w, b, self.rows)
        if performance > self.performance:
            self.w, self.b, self.performance = w, b, performance

    def propose(self, champion):
        if champion is not None:
            self.adopt_if_better(*self.domain.decode_params(champion["params"]))
        w, b = self.w, self.b
        for _ in range(self.steps):
            w, b = self.domain.gradient_step(w, b, self.rows, self.lr)
        self.adopt_if_better(w, b)
        return {
            "params": self.domain.encode_params(self.w, self.b),
            "claimed_performance": self.performance,
            "hyperparameters": {"learning_rate": self.lr},
            "metrics": {"train_mse": -self.performance},
        }


def decode_b64(text, kind):
    if not isinstance(text, str):
        raise DomainError(kind, "expected a base64 string")
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (ValueError, UnicodeEncodeError):
        raise DomainError(kind, "not valid base64")


def encode_b64(raw):
    return base64.b64encode(raw).decode("ascii")


# --- the protocol loop ---


class Server:
    def __init__(self):
        self.domain = None
        self.optimizers = {}

    def need_domain(self):
        if self.domain is None:
            raise DomainError("failed", "describe must come first")
        return self.domain

    def handle(self, method, params):
        if method == "describe":
            if params.get("protocol") != PROTOCOL:
                raise DomainError("failed", "this program speaks protocol %d" % PROTOCOL)
            config = params.get("config") or {}
            self.domain = Domain(str(params.get("domain", "")), config)
            self.optimizers = {}
            return self.domain.describe()
        domain = self.need_domain()
        if method == "synthesize":
            return {"dataset": domain.synthesize(params.get("seed"))}
        if method == "evaluate":
            w, b = domain.decode_params(params.get("params"))
            rows = domain.decode_dataset(params.get("dataset"))
            return {"score": domain.score(w, b, rows)}
        if method == "infer":
            w, b = domain.decode_params(params.get("params"))
            features = (params.get("input") or {}).get("features") if isinstance(params.get("input"), dict) else None
            if not isinstance(features, list) or len(features) != domain.n or not all(
                    isinstance(v, (int, float)) and not isinstance(v, bool) for v in features):
                raise DomainError("invalid_input", "expected {\"features\": [%d numbers]}" % domain.n)
            prediction = b
            for wi, xi in zip(w, features):
                prediction += wi * xi
            return {"output": {"prediction": prediction}}
        if method == "optimizer_new":
            self.optimizers[params["optimizer"]] = Optimizer(domain, params.get("config") or {}, int(params.get("seed", 0)))
            return {}
        if method == "propose":
            optimizer = self.optimizer(params)
            return optimizer.propose(params.get("champion"))
        if method == "inject":
            optimizer = self.optimizer(params)
            optimizer.adopt_if_better(*domain.decode_params(params["migrant"]["params"]))
            return {}
        if method == "train":
            hyper = params.get("hyperparameters") or {}
            lr, steps = hyper.get("learning_rate"), hyper.get("steps")
            if not isinstance(lr, (int, float)) or not isinstance(steps, (int, float)):
                raise DomainError("invalid_input", "learning_rate and steps are required")
            rows = domain.samples(SplitMix64(TAG_TRAIN, [int(params.get("seed", 0)) & MASK]), domain.train_samples)
            w, b = [0.0] * domain.n, 0.0
            for _ in range(int(steps)):
                w, b = domain.gradient_step(w, b, rows, float(lr))
            return {
                "params": domain.encode_params(w, b),
                "claimed_performance": domain.score(w, b, rows),
                "hyperparameters": {"learning_rate": float(lr), "steps": float(int(steps))},
                "metrics": {},
            }
        raise DomainError("unsupported", "unknown method %r" % method)

    def optimizer(self, params):
        optimizer = self.optimizers.get(params.get("optimizer"))
        if optimizer is None:
            raise DomainError("failed", "unknown optimizer %r" % params.get("optimizer"))
        return optimizer


def reply(message):
    sys.stdout.write(json.dumps(message, allow_nan=False, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def main():
    server = Server()
    stdin = sys.stdin.buffer
    while True:
        line = stdin.readline(MAX_LINE_BYTES + 1)
        if not line:
            return 0  # the node closed stdin: exit
        if len(line) > MAX_LINE_BYTES:
            print("request line too long", file=sys.stderr)
            return 1
        if not line.strip():
            continue
        request = json.loads(line)
        request_id = request.get("id")
        try:
            result = server.handle(request.get("method"), request.get("params") or {})
            message = {"id": request_id, "result": result}
            reply(message)
        except DomainError as e:
            error = {"kind": e.kind, "message": str(e)}
            if e.field is not None:
                error["field"] = e.field
            reply({"id": request_id, "error": error})
        except Exception as e:  # a bug in the domain: report it, keep serving
            traceback.print_exc(file=sys.stderr)
            reply({"id": request_id, "error": {"kind": "failed", "message": "%s: %s" % (type(e).__name__, e)}})


if __name__ == "__main__":
    sys.exit(main())
