"""An app-defined exception, imported by the crash scripts so its qualified name is ``crash_errors.PaymentError``."""


class PaymentError(Exception):
    pass
