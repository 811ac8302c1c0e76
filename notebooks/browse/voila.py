"""Voilà's settings for `cxr browse` (the server reads this file: --Voila.config_file_paths names its folder)."""

c = get_config()  # noqa: F821  (traitlets' config loader defines it)

c.VoilaConfiguration.template = "cxr-browse"  # voila/templates/cxr-browse: the lab template, without CDN fetches
c.VoilaConfiguration.show_tracebacks = True


def set_xsrf_cookie(handler, notebook, cwd):
    """Give the page Jupyter Server's _xsrf cookie before its kernel starts.

    When the page closes, Voilà's front end sends the kernel's shutdown request with the _xsrf value it reads
    from that cookie; Voilà's page handler never sets it, so the request was refused (403 '_xsrf' argument
    missing) and the kernel lived on. Reading handler.xsrf_token sets the cookie on this response.
    """
    handler.xsrf_token


c.VoilaConfiguration.prelaunch_hook = set_xsrf_cookie
