"""CPU profiles: sampling every thread's stack, and the collapsed / speedscope exports."""
