"""KafkaSecurity: one config object, the keyword arguments of each Kafka client library,
errors that name what failed and never the password. The broker side
is tests/integration/test_security.py."""

from __future__ import annotations

import ssl

import pytest

from driftrec.app.settings import ConfigError, Settings
from driftrec.stream import KafkaSecurity, StreamConfigError
from driftrec.stream.security import explain

PW = "Pw-never-shown-77"  # noqa: S105


def test_plaintext_adds_nothing():
    s = KafkaSecurity()
    assert s.aiokafka_kwargs() == {} and s.kafka_python_kwargs() == {} and s.faust_config() == {}


def test_sasl_ssl_kwargs_for_each_client():
    s = KafkaSecurity("SASL_SSL", "SCRAM-SHA-512", "alice", PW)
    a = s.aiokafka_kwargs()
    assert a["security_protocol"] == "SASL_SSL" and a["sasl_mechanism"] == "SCRAM-SHA-512"
    assert a["sasl_plain_username"] == "alice" and a["sasl_plain_password"] == PW
    assert isinstance(a["ssl_context"], ssl.SSLContext) and a["ssl_context"].check_hostname
    k = s.kafka_python_kwargs()
    assert k["security_protocol"] == "SASL_SSL" and k["sasl_plain_password"] == PW
    assert isinstance(k["ssl_context"], ssl.SSLContext)
    creds = s.faust_config()["broker_credentials"]
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    auth = credentials_to_aiokafka_auth(creds)
    assert auth["security_protocol"] == "SASL_SSL" and auth["sasl_mechanism"] == "SCRAM-SHA-512"
    assert auth["sasl_plain_password"] == PW


def test_ssl_only_and_plain_sasl():
    assert KafkaSecurity("SSL").aiokafka_kwargs()["security_protocol"] == "SSL"
    assert "sasl_mechanism" not in KafkaSecurity("SSL").kafka_python_kwargs()
    k = KafkaSecurity("SASL_PLAINTEXT", "PLAIN", "bob", PW).kafka_python_kwargs()
    assert "ssl_context" not in k and k["sasl_mechanism"] == "PLAIN"


def test_the_password_is_never_shown():
    s = KafkaSecurity("SASL_SSL", "SCRAM-SHA-256", "alice", PW)
    assert PW not in repr(s) and PW not in s.describe()
    msg = explain(RuntimeError(f"SaslAuthenticationFailed for {PW}"), s, "h:9094")
    assert msg is not None and "authentication" in msg and PW not in msg


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(protocol="TLS"), "KAFKA_SECURITY_PROTOCOL"),
        (dict(protocol="SASL_SSL", mechanism="GSSAPI", username="u", password="p"), "KAFKA_SASL_MECHANISM"),
        (dict(protocol="SASL_SSL", mechanism="PLAIN", username="u"), "KAFKA_SASL_PASSWORD"),
        (dict(protocol="SSL", keyfile="/k.pem"), "KAFKA_SSL_CERTFILE"),
        (dict(protocol="SSL", cafile="/no/such/ca.pem"), "KAFKA_SSL_CAFILE"),
    ],
)
def test_bad_combinations_are_config_errors(kw, match):
    with pytest.raises(StreamConfigError, match=match):
        KafkaSecurity(**kw).aiokafka_kwargs()


def test_explain_names_tls_and_authentication():
    s = KafkaSecurity("SASL_SSL", "SCRAM-SHA-512", "alice", PW)
    err = ssl.SSLCertVerificationError(1, "certificate verify failed")
    err.verify_message = "self-signed certificate in certificate chain"
    tls = explain(err, s, "h:9094")
    assert tls is not None and tls.startswith("TLS to Kafka") and "KAFKA_SSL_CAFILE" in tls

    class SaslAuthenticationFailed(Exception):
        pass

    auth = explain(SaslAuthenticationFailed("invalid credentials"), s, "h:9094")
    assert auth is not None and auth.startswith("authentication to Kafka") and "'alice'" in auth
    assert explain(ConnectionRefusedError(111, "refused"), KafkaSecurity("SSL"), "h:1") is None


def test_settings_password_file_and_validation(tmp_path):
    f = tmp_path / "pw"
    f.write_text(PW + "\n")
    s = Settings.from_env(
        {
            "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "KAFKA_SASL_USERNAME": "alice",
            "KAFKA_SASL_PASSWORD_FILE": str(f),
        }
    )
    sec = s.kafka_security()
    assert sec.password == PW and sec.mechanism == "SCRAM-SHA-512"
    assert PW not in repr(s)
    # the variable wins over the file
    s2 = Settings.from_env(
        {
            "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "KAFKA_SASL_USERNAME": "a",
            "KAFKA_SASL_PASSWORD": "direct",
            "KAFKA_SASL_PASSWORD_FILE": str(f),
        }
    )
    assert s2.kafka_security().password == "direct"
    with pytest.raises(ConfigError, match="KAFKA_SASL_PASSWORD"):
        Settings.from_env(
            {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_USERNAME": "a"}
        ).kafka_security()
    with pytest.raises(ConfigError) as e:
        Settings.from_env({"KAFKA_SASL_PASSWORD": PW, "KAFKA_SECURITY_PROTOCOL": "SSL3"})
    assert PW not in str(e.value)
    with pytest.raises(ConfigError, match="KAFKA_SSL_CAFILE='/no/such.pem': no such file"):
        Settings.from_env({"KAFKA_SSL_CAFILE": "/no/such.pem"})
    assert Settings.from_env({}).kafka_security() == KafkaSecurity()


def test_redis_options_from_settings(tmp_path):
    f = tmp_path / "redis.pw"
    f.write_text("r-pw\n")
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    s = Settings.from_env(
        {
            "REDIS_PASSWORD_FILE": str(f),
            "REDIS_SSL_CAFILE": str(ca),
            "STATE_URL": "rediss://driftrec@127.0.0.1:6380/0",
        }
    )
    assert s.redis_options() == {"ssl_ca_certs": str(ca), "password": "r-pw"}
    assert s.state_url.startswith("rediss://")


def test_faust_app_takes_the_credentials():
    pytest.importorskip("faust")
    from driftrec.stream.faust_app import make_app

    class Hooks:
        def handle(self, records): ...

        def between_batches(self): ...

    s = KafkaSecurity("SASL_SSL", "SCRAM-SHA-512", "alice", PW)
    app, _ = make_app(Hooks(), "127.0.0.1:9094", ["t"], "g-sec-test", security=s)
    assert app.conf.broker_credentials.username == "alice"
    assert app.conf.broker_credentials.mechanism.value == "SCRAM-SHA-512"


def test_the_admin_clients_debug_log_of_its_configuration_hides_the_password(caplog) -> None:
    """kafka-python's KafkaAdminClient logs its configuration, password included, at DEBUG
    (``log.debug("Starting KafkaAdminClient with configuration: %s", configs)``)."""
    import logging

    import driftrec.stream.security  # noqa: F401  (installs the filter)

    configs = {"bootstrap_servers": "b:9094", "sasl_plain_username": "u", "sasl_plain_password": "s3cr3t-pw"}
    with caplog.at_level(logging.DEBUG, logger="kafka.admin.client"):
        logging.getLogger("kafka.admin.client").debug(
            "Starting KafkaAdminClient with configuration: %s", configs
        )
    text = caplog.text
    assert "Starting KafkaAdminClient" in text and "sasl_plain_username" in text
    assert "s3cr3t-pw" not in text and "***" in text
    assert configs["sasl_plain_password"] == "s3cr3t-pw"  # the client's own configuration is untouched
