namespace NativeVlm.Models;

/// <summary>
/// A config.json that NativeVlm cannot run as written: the message names the file and the JSON
/// path of the field ("config.json: text_config.hidden_act = 'gelu' is not supported (expected silu)").
/// </summary>
public sealed class ConfigException(string filePath, string jsonPath, string message) : Exception(message)
{
    public string FilePath { get; } = filePath;

    /// <summary>Dotted path of the field at fault ("text_config.rope_scaling"); empty for the whole file.</summary>
    public string JsonPath { get; } = jsonPath;
}
