using NativeVlm.Data;
using NativeVlm.Text;
using NativeVlm.Vision;

namespace NativeVlm.Cli;

/// <summary>
/// The verbs that read a dataset through the sample builder report its errors (a bad dataset file or
/// row, tokenizer, chat template or image) as the host reports its own: one line on stderr, exit 2.
/// </summary>
internal static class DataInputErrors
{
    public static int Report(Func<int> command)
    {
        try
        {
            return command();
        }
        catch (Exception e) when (e is DatasetException or TokenizerException or ChatTemplateException or InvalidDataException or ImageInputException)
        {
            Console.Error.WriteLine($"nativevlm: {e.Message}");
            return 2;
        }
    }
}
