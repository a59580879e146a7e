namespace NativeVlm.Text;

/// <summary>
/// A tokenizer.json that NativeVlm cannot load as written: the message names the file and the JSON
/// path of the component ("tokenizer.json: pre_tokenizer.pretokenizers[0].type = 'Metaspace' is not supported ...").
/// </summary>
public sealed class TokenizerException(string filePath, string jsonPath, string message) : Exception(message)
{
    public string FilePath { get; } = filePath;

    /// <summary>Dotted path of the component at fault ("model.merges[12]"); empty for the whole file.</summary>
    public string JsonPath { get; } = jsonPath;
}
