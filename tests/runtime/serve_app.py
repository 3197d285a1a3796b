"""The Serve application of scenario 4's RayService (imported by the Ray workers through the
serveConfigV2's runtime_env PYTHONPATH, which the rig points at this directory)."""
import socket

from ray import serve


@serve.deployment(ray_actor_options={"num_cpus": 0})
class Hello:
    def __call__(self, request):
        return f"hello from the rayservice on {socket.gethostname()}"


app = Hello.bind()
