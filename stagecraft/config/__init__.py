"""stagecraft.yml: models, loading with exact positions, environment overlays."""

from stagecraft.config.loader import LoadedConfig, find_config, load_config, load_config_text

__all__ = ["LoadedConfig", "find_config", "load_config", "load_config_text"]
