"""Write the CA certificate (and its chain) in one of the download formats."""

from django.core.management.base import BaseCommand, CommandError

from requests_app.downloads import CA_FORMATS, encode_ca
from requests_app.management._util import write_binary, write_output
from requests_app.models import CertificateAuthority, NoCAError

BINARY_FORMATS = ("der", "p7b")


class Command(BaseCommand):
    help = (
        "Export the default CA (or --ca ID): pem (the CA certificate and its chain), der (the "
        "CA certificate alone) or p7b (all of them), to --output or to stdout."
    )

    def add_arguments(self, parser):
        parser.add_argument("--format", choices=CA_FORMATS, default="pem")
        parser.add_argument("--output", metavar="PATH")
        parser.add_argument("--ca", type=int, metavar="ID", help="a CA's id from show_ca")

    def handle(self, *args, format, output, ca, **options):
        if ca is None:
            try:
                authority = CertificateAuthority.objects.default()
            except NoCAError as exc:
                raise CommandError(str(exc)) from None
        else:
            authority = CertificateAuthority.objects.filter(pk=ca).first()
            if authority is None:
                raise CommandError(f"no CA has the id {ca}; show_ca lists them")
        encoded = encode_ca(authority, format)
        if output:
            write_output(output, encoded.data)
            self.stdout.write(f"Wrote CA {authority.name} ({format}) to {output}")
            return
        if format in BINARY_FORMATS and self.stdout.isatty():
            raise CommandError(f"{format} is binary: use --output PATH or redirect stdout")
        write_binary(self.stdout, encoded.data)
