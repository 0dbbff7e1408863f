"""Write an issued certificate in one of the download formats."""

from django.core.management.base import BaseCommand, CommandError

from requests_app.downloads import CERTIFICATE_FORMATS, encode_certificate
from requests_app.management._util import find_certificate, write_binary, write_output

BINARY_FORMATS = ("der", "p7b")


class Command(BaseCommand):
    help = (
        "Export a certificate: pem (the certificate), der, p7b (with its chain) or chain "
        "(full-chain PEM), to --output or to stdout."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "serial",
            metavar="SERIAL",
            help="05:35:F2..., 0535F2..., 0x..., serial=... (openssl) or dec:... (decimal)",
        )
        parser.add_argument("--format", choices=CERTIFICATE_FORMATS, default="pem")
        parser.add_argument("--output", metavar="PATH")

    def handle(self, *args, serial, format, output, **options):
        cert = find_certificate(serial)
        encoded = encode_certificate(cert, format)
        if output:
            write_output(output, encoded.data)
            self.stdout.write(f"Wrote certificate {cert.serial_colons} ({format}) to {output}")
            return
        if format in BINARY_FORMATS and self.stdout.isatty():
            raise CommandError(f"{format} is binary: use --output PATH or redirect stdout")
        write_binary(self.stdout, encoded.data)
